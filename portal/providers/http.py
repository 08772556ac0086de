"""Provider calls: one prompt to one model in one region, over HTTP or on this machine.

The HTTP kinds share this module's exchange; each wire format (`openai`, `ollama`,
`anthropic`) is a small module saying where to post, what body to send and how to read the
answer. The local llama.cpp kind lives in `portal.providers.local`, the result and error types
in `portal.providers.common`. A region's headers and extra_body, and the temperature and
max_tokens of a region or model, reach every HTTP request here (portal/call_options.py).

`call()` returns a `ProviderResult` or raises `ProviderError`, whose message names the region
and says what went wrong in words a user can act on, and whose `transient` flag tells the
executor whether a retry may help. The timeout bounds the whole call, body included.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import gevent
import gevent.monkey

from portal import call_options
from portal.config import Model, Region
from portal.providers import anthropic, http_pool, local, ollama, openai
from portal.providers import served_by as provenance
from portal.providers.common import (
    DETAIL_CHARS,
    DeadlineExceeded,
    ProviderError,
    ProviderResult,
    clip,
    dig,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
# The wire format of each HTTP provider kind.
WIRES = {"openai": openai, "ollama": ollama, "anthropic": anthropic}


def call(
    region: Region,
    model: Model,
    prompt: str,
    *,
    timeout_s: float,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> ProviderResult:
    """Sends one prompt to one model in one region and returns its answer; max_tokens and
    temperature default to the region's, else the model's (call_options)."""
    if max_tokens is None:
        max_tokens = call_options.max_tokens_for(region, model)
    if temperature is None:
        temperature = call_options.temperature_for(region, model)
    started_at = datetime.now(UTC)
    start = time.monotonic()
    deadline = start + timeout_s
    wire = WIRES.get(region.provider)
    if wire is not None:
        text, prompt_tokens, completion_tokens, said = _call_http(
            wire, region, model, prompt, deadline, timeout_s, max_tokens, temperature
        )
        served_as = _provider_model(model)
    elif region.provider == "local":
        path = local.local_path(region, model)
        text, prompt_tokens, completion_tokens = local.call_local(
            region, path, prompt, deadline, timeout_s, max_tokens, temperature
        )
        served_as = Path(path).name
        said = {"model": served_as}
    else:
        raise ProviderError(
            f"{region.id}: unknown provider kind {region.provider!r}"
            " (use openai, ollama, anthropic or local)",
            transient=False,
        )
    finished_at = datetime.now(UTC)
    return ProviderResult(
        text=text,
        provider=region.provider,
        provider_model=served_as,
        started_at=started_at,
        finished_at=finished_at,
        latency_ms=round((time.monotonic() - start) * 1000),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        served_by=said,
    )


def local_model_loaded() -> bool:
    """True once a local model file has been loaded into memory in this process."""
    return local.local_model_loaded()


def _provider_model(model: Model) -> str:
    return model.provider_model or model.id


# --- HTTP providers ---------------------------------------------------------------------------


def _call_http(wire, region, model, prompt, deadline, timeout_s, max_tokens, temperature):
    url = f"{_base_url(region)}{wire.PATH}"
    payload = wire.body(_provider_model(model), prompt, max_tokens, temperature)
    payload = call_options.merged_body(payload, region.extra_body)
    data, said = _post_json(region, url, payload, _headers(wire, region), deadline, timeout_s)
    reply = wire.read(data)
    if reply.text is None:
        raise _unexpected(region, url, data, reply.problem)
    return reply.text, reply.prompt_tokens, reply.completion_tokens, said


def _headers(wire, region: Region) -> dict:
    """Returns the request headers: the exchange's, the key, the wire format's, the region's."""
    headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
    token = os.environ.get(region.api_key_env) if region.api_key_env else None
    if token:
        headers.update(wire.auth(token))
    headers.update(wire.HEADERS)
    for name, value in region.headers:
        # A region's header replaces one of the same name whatever its case (config refuses
        # the transport's own and the key's).
        for same in [k for k in headers if k.lower() == name.lower()]:
            del headers[same]
        headers[name] = value
    return headers


def _base_url(region: Region) -> str:
    if not region.base_url:
        raise ProviderError(
            f"{region.id}: no base_url configured for provider {region.provider!r}",
            transient=False,
        )
    return region.base_url.rstrip("/")


def _post_json(region: Region, url: str, payload: dict, headers: dict, deadline, timeout_s):
    """Posts `payload`; returns a 2xx answer's JSON and served_by, else raises ProviderError."""
    timed_out = f"{region.id}: no complete answer from {url} within {timeout_s:g} s"
    try:
        with _deadline_guard(deadline):
            status, response_headers, body, peer = _exchange(url, payload, headers, deadline)
    except (DeadlineExceeded, http_pool.DeadlineExceeded, TimeoutError):
        raise ProviderError(timed_out, transient=True) from None
    except http_pool.TooLarge:
        raise ProviderError(
            f"{region.id}: response too large from {url} (over {MAX_BODY_BYTES // 1048576} MiB)",
            transient=False,
        ) from None
    except ssl.SSLError as exc:
        raise ProviderError(
            f"{region.id}: TLS error talking to {url}: {clip(str(exc))}", transient=False
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise ProviderError(
            f"{region.id}: {_connection_problem(exc, url)}", transient=True
        ) from None
    except ValueError as exc:
        # Invalid URLs and the like: retrying cannot help.
        raise ProviderError(
            f"{region.id}: cannot call {url}: {clip(str(exc))}", transient=False
        ) from None
    if not 200 <= status < 300:
        raise _http_error(region, url, status, response_headers, body)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and UnicodeDecodeError; deep nesting hits recursion.
        raise ProviderError(
            f"{region.id}: invalid JSON in the answer from {url}: {clip(_text(body))!r}",
            transient=False,
            status=status,
        ) from None
    return data, provenance.describe(data, response_headers, peer)


def _exchange(url: str, payload: dict, headers: dict, deadline: float):
    """Returns (status, headers, body, peer IP) over a kept-alive connection (http_pool.py)."""
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    headers = {**headers, "Content-Type": "application/json"}
    response = http_pool.post(url, body, headers, deadline, MAX_BODY_BYTES)
    peer = str(response.peer[0]) if response.peer else None
    return response.status, response.headers, response.body, peer


@contextmanager
def _deadline_guard(deadline: float):
    """Under gevent, interrupts the whole exchange at the deadline, headers included."""
    if not gevent.monkey.is_module_patched("socket"):
        yield
        return
    timer = gevent.Timeout(max(0.0, deadline - time.monotonic()))
    timer.start()
    try:
        yield
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        raise DeadlineExceeded from None
    finally:
        timer.close()


def _http_error(region: Region, url: str, status: int, headers, body: bytes) -> ProviderError:
    message = f"{region.id}: HTTP {status} from {url}"
    if 300 <= status < 400:
        target = headers.get("Location", "another address")
        message += f": redirected to {clip(target)}; set base_url to the final address"
    else:
        detail = _error_detail(body)
        if detail:
            message += f": {detail}"
    if status in (401, 403) and region.api_key_env:
        if os.environ.get(region.api_key_env):
            words = WIRES[region.provider].KEY_WORDS if region.provider in WIRES else "key"
            message += f" (the {words} comes from {region.api_key_env})"
        else:
            message += f" (the environment variable {region.api_key_env} is not set)"
    transient = status in (408, 429) or status >= 500
    retry_after = _retry_after(headers.get("Retry-After")) if transient else None
    return ProviderError(message, transient=transient, status=status, retry_after=retry_after)


def _error_detail(body: bytes) -> str:
    """Returns the provider's own error message from an error body, shortened."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return clip(_text(body))
    if isinstance(data, dict):
        for found in (dig(data, "error", "message"), data.get("error"), data.get("detail")):
            if isinstance(found, str) and found.strip():
                return clip(found)
        message = data.get("message")
        if isinstance(message, str):
            return clip(message)
    return clip(_text(body))


def _unexpected(region: Region, url: str, data, problem: str) -> ProviderError:
    message = f"{region.id}: unexpected answer from {url}: {problem}"
    if isinstance(data, dict) and data.get("error"):
        message += f" (the provider says: {_error_detail(json.dumps(data).encode())})"
    return ProviderError(message, transient=False)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _connection_problem(exc: BaseException, url: str) -> str:
    for current in _chain(exc):
        if isinstance(current, ConnectionRefusedError):
            return f"cannot connect to {url}: connection refused"
        if isinstance(current, socket.gaierror):
            return f"cannot connect to {url}: host name not found"
        if isinstance(
            current,
            ConnectionResetError
            | BrokenPipeError
            | http.client.RemoteDisconnected
            | http.client.IncompleteRead
            | http.client.BadStatusLine,
        ):
            return f"connection to {url} closed before a complete answer"
    return f"cannot connect to {url}: {clip(str(_innermost(exc)))}"


def _chain(exc: BaseException):
    """Yields `exc` and the exceptions it wraps, through causes, contexts, args and reasons."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        wrapped += list(current.args)
        todo += [e for e in wrapped if isinstance(e, BaseException)]


def _innermost(exc: BaseException) -> BaseException:
    return list(_chain(exc))[-1]


def _text(body: bytes) -> str:
    return body[: DETAIL_CHARS * 4].decode("utf-8", errors="replace")
