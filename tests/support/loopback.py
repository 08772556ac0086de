"""A loopback LLM provider: a real HTTP server speaking the OpenAI, Ollama and Anthropic APIs.

It stands in for third-party hosts in tests, benchmarks and the deployment check. Answers are
deterministic (`[label] model answers: prompt`, cut to the request's max_tokens words), latency
is slept inside each request so in-flight counts are real, every request's headers and body are
recorded, and faults (HTTP errors, a refused key, hangs, resets, garbage, slow drips, huge
bodies, a null answer text, an answer without usage) can be scripted per model or prompt. Run it
as a process with `python -m tests.support.loopback --port N --latency S --kind openai|ollama`;
it prints `listening on <base_url>` and serves `GET /_stats` and `POST /_reset` for the caller.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = (
    "500",
    "503",
    "404",
    "401",
    "401-echo",
    "429",
    "hang",
    "reset",
    "garbage",
    "huge",
    "drip",
    "null-content",
    "no-usage",
)
HUGE_BYTES = 10 * 1024 * 1024
_ERRORS = {
    "500": (500, "internal server error", "server_error"),
    "503": (503, "the server is overloaded, try again later", "server_error"),
    "429": (429, "rate limit reached, retry after 1 s", "rate_limit_exceeded"),
}


def default_responder(label: str) -> Callable[[str, str], str]:
    """Returns the deterministic responder that echoes the model and the prompt."""
    return lambda model, prompt: f"[{label}] {model} answers: {prompt}"


def refusing_responder(pattern: str, label: str) -> Callable[[str, str], str]:
    """Returns a responder that refuses prompts matching `pattern` and echoes the rest."""
    refused = re.compile(pattern, re.IGNORECASE)
    echo = default_responder(label)

    def respond(model: str, prompt: str) -> str:
        if refused.search(prompt):
            return f"[{label}] I'm sorry, but I can't discuss that topic."
        return echo(model, prompt)

    return respond


# A loopback acting as the judge model (portal/judge/labels.py) finds what it is shown between the
# judge prompt's fences, and reads a refusal from these words.
_JUDGED_ANSWER = re.compile(r"<<<ANSWER\n(.*?)\nANSWER>>>", re.S)
_SUMMARY_ANSWERS = re.compile(r"<<<ANSWERS\n(.*?)\nANSWERS>>>", re.S)
_SUMMARY_LINE = re.compile(
    r"\[answer:(\d+)\] model (\S+), region (\S+), question (\S+), label (\w+):"
)
_REFUSES = re.compile(r"\b(sorry|cannot|can't|unable to|won't)\b", re.IGNORECASE)


def judging_responder(fallback: Callable[[str, str], str] | None = None, label: str = "judge"):
    """Returns a responder that also acts as the judge: a judge prompt gets `denial` when the
    answer it shows refuses and `complete` otherwise, a summary prompt gets a summary citing the
    answers labelled `denial`, and any other prompt goes to `fallback`."""
    answer = fallback or default_responder(label)

    def respond(model: str, prompt: str) -> str:
        block = _SUMMARY_ANSWERS.search(prompt)
        if block:
            return judge_summary(block.group(1))
        judged = _JUDGED_ANSWER.search(prompt)
        if judged:
            return "denial" if _REFUSES.search(judged.group(1)) else "complete"
        return answer(model, prompt)

    return respond


def judge_summary(block: str) -> str:
    """Returns a deterministic summary of the listed answers, citing their ids."""
    lines = [m for m in map(_SUMMARY_LINE.match, block.splitlines()) if m]
    denied = [m for m in lines if m.group(5) == "denial"]
    if denied:
        said = "; ".join(
            f"{m.group(3)} refused {m.group(4)} for {m.group(2)} [answer:{m.group(1)}]"
            for m in denied
        )
        return f"Some regions refused to answer: {said}."
    cited = " ".join(f"[answer:{m.group(1)}]" for m in lines[:2])
    return f"Every region answered every question alike {cited}."


class LoopbackProvider:
    """Serves chat completions on 127.0.0.1 from a daemon thread; also a context manager."""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        responder: Callable[[str, str], str] | None = None,
        label: str = "loopback",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.latency_s = latency_s
        self.label = label
        self.responder = responder or default_responder(label)
        self.calls: list[dict] = []
        # (prompt_tokens, completion_tokens) to report instead of the words counted, or None.
        self.usage: tuple[int, int] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._scripts: list[tuple[dict, deque]] = []
        self._always: list[tuple[dict, str]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the loopback provider is not started")
        return self._server.server_address[1]

    @property
    def base_url_openai(self) -> str:
        return f"http://{self._address[0]}:{self.port}/v1"

    @property
    def base_url_ollama(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    @property
    def base_url_anthropic(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    def start(self) -> LoopbackProvider:
        """Binds the port and starts serving in a daemon thread."""
        self._stopping.clear()
        self._server = _Server(self._address, _Handler)
        self._server.provider = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-{self.label}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and releases hanging and dripping requests."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackProvider:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def script(
        self, faults: list[str], *, model: str | None = None, prompt_contains: str | None = None
    ) -> None:
        """Queues faults consumed one per matching call; later calls are answered normally."""
        for fault in faults:
            _check_fault(fault)
        with self._lock:
            match = {"model": model, "prompt_contains": prompt_contains}
            self._scripts.append((match, deque(faults)))

    def always(
        self, fault: str, *, model: str | None = None, prompt_contains: str | None = None
    ) -> None:
        """Answers every matching call with `fault` until `clear_faults()`."""
        _check_fault(fault)
        with self._lock:
            self._always.append(({"model": model, "prompt_contains": prompt_contains}, fault))

    def clear_faults(self) -> None:
        """Drops every scripted and permanent fault."""
        with self._lock:
            self._scripts.clear()
            self._always.clear()

    def reset(self) -> None:
        """Forgets recorded calls and the in-flight high-water mark."""
        with self._lock:
            self.calls.clear()
            self.max_in_flight = self.in_flight

    def count(self, model: str | None = None, prompt: str | None = None) -> int:
        """Returns how many calls matched `model` and `prompt` (None matches anything)."""
        with self._lock:
            return sum(
                1
                for c in self.calls
                if (model is None or c["model"] == model)
                and (prompt is None or c["prompt"] == prompt)
            )

    def stats(self) -> dict:
        """Returns call counts and concurrency figures as served by `GET /_stats`."""
        with self._lock:
            counts: dict[tuple, int] = {}
            for c in self.calls:
                key = (c["model"], c["prompt"])
                counts[key] = counts.get(key, 0) + 1
            return {
                "calls": len(self.calls),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "counts": [{"model": m, "prompt": p, "count": n} for (m, p), n in counts.items()],
            }

    def _begin(self, record: dict) -> str | None:
        """Records a call as in flight and returns the fault it must get, if any."""
        with self._lock:
            self.calls.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            for match, queue in self._scripts:
                if queue and _matches(match, record):
                    return queue.popleft()
            for match, fault in self._always:
                if _matches(match, record):
                    return fault
        return None

    def _end(self, record: dict, status: int | None) -> None:
        with self._lock:
            self.in_flight -= 1
            record["status"] = status
            record["finished"] = time.time()


def _check_fault(fault: str) -> None:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r} (known: {', '.join(FAULTS)})")


def _matches(match: dict, record: dict) -> bool:
    if match["model"] is not None and match["model"] != record["model"]:
        return False
    wanted = match["prompt_contains"]
    return wanted is None or wanted in (record["prompt"] or "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    provider: LoopbackProvider

    def __init__(self, *args, **kwargs):
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_open_connections(self) -> None:
        """Closes the kept-alive connections, as a stopped server's would be."""
        with self.connections_lock:
            for conn in list(self.open_connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "loopback-llm/1"
    # Keep-alive, as real providers: a client may send its next call on the same connection.
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as real providers set it (uvicorn, Go's net/http, nginx): without it the
    # body, written after the headers, waits for the client's delayed ACK, about 40 ms per call
    # on a kept-alive connection, which made every call 90 ms at a 50 ms latency.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self):
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        super().finish()

    def log_message(self, format, *args):  # noqa: A002 - signature set by the base class
        """Keeps request logs out of test and benchmark output."""

    def do_GET(self):
        """Serves the call statistics."""
        if self.path.split("?")[0] == "/_stats":
            self._send_json(200, self.server.provider.stats())
        else:
            self._send_json(404, {"error": f"no such path: {self.path}"})

    def do_POST(self):
        """Answers a chat completion, or resets the statistics."""
        owner = self.server.provider
        path = self.path.split("?")[0]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if path == "/_reset":
            owner.reset()
            self._send_json(200, {"reset": True})
            return
        kinds = {
            "/v1/chat/completions": "openai",
            "/api/chat": "ollama",
            "/v1/messages": "anthropic",
        }
        if path not in kinds:
            self._send_json(404, {"error": f"no such path: {path}"})
            return
        kind = kinds[path]
        payload, problem = _parse_request(kind, body)
        record = {
            "kind": kind,
            "model": payload.get("model") if payload else None,
            "prompt": _last_user_message(payload) if payload else None,
            "payload": payload,
            "authorization": self.headers.get("Authorization"),
            "headers": dict(self.headers.items()),
            "started": time.time(),
            "finished": None,
            "status": None,
            "fault": None,
        }
        fault = owner._begin(record)
        record["fault"] = fault
        status = None
        try:
            if owner.latency_s > 0:
                owner._stopping.wait(owner.latency_s)
            if problem:
                status = self._send_error(kind, 400, problem, "invalid_request_error")
            else:
                status = self._answer(kind, payload, record["prompt"], fault)
        except OSError:
            pass  # the client went away; the record keeps status None
        finally:
            owner._end(record, status)

    def _answer(self, kind: str, payload: dict, prompt: str, fault: str | None) -> int | None:
        owner = self.server.provider
        model = payload["model"]
        if fault == "401":
            return self._send_error(kind, 401, "invalid api key", "authentication_error")
        if fault == "401-echo":  # as hosts that quote the key they refused
            sent = self.headers.get("Authorization") or self.headers.get("x-api-key") or ""
            message = f"Incorrect API key provided: {sent}"
            return self._send_error(kind, 401, message, "authentication_error")
        if fault in _ERRORS:
            status, message, code = _ERRORS[fault]
            retry = {"Retry-After": "1"} if fault == "429" else {}
            return self._send_error(kind, status, message, code, retry)
        if fault == "404":
            return self._send_error(kind, 404, f"model '{model}' not found", "model_not_found")
        if fault == "hang":
            owner._stopping.wait()
            self.close_connection = True
            return None
        if fault == "reset":
            self._reset_connection()
            return None
        if fault == "garbage":
            return self._send_raw(200, b"<html>this is not json {", "application/json")
        if fault == "huge":
            return self._send_huge()
        text = None if fault == "null-content" else owner.responder(model, prompt)
        limit = _max_tokens(kind, payload)
        if text is not None and limit is not None:
            text = " ".join(text.split(" ")[:limit])  # one word per token, as max_tokens asks
        answer = {"openai": _openai_answer, "ollama": _ollama_answer}.get(kind, _anthropic_answer)
        doc = answer(model, prompt, text, owner.usage)
        if kind == "openai":  # what hosts and routers say about themselves (served_by)
            doc.update(system_fingerprint=f"fp-{owner.label}", provider=owner.label)
        if fault == "no-usage":
            for name in ("usage", "prompt_eval_count", "eval_count"):
                doc.pop(name, None)
        data = json.dumps(doc).encode()
        if fault == "drip":
            return self._send_drip(data)
        request_id = {"X-Request-Id": f"req-{owner.label}-{time.time_ns()}"}
        return self._send_raw(200, data, "application/json", request_id)

    def _send_json(self, status: int, data: dict, headers: dict | None = None) -> int:
        return self._send_raw(status, json.dumps(data).encode(), "application/json", headers)

    def _send_error(self, kind, status, message, code, headers=None) -> int:
        if kind == "openai":
            data = {"error": {"message": message, "type": code, "code": status}}
        elif kind == "anthropic":
            data = {"type": "error", "error": {"type": code, "message": message}}
        else:
            data = {"error": message}
        return self._send_json(status, data, headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers=None) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        return status

    def _send_drip(self, data: bytes) -> int:
        """Sends a valid body one byte per second, until done or stopped."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.flush()
        for index in range(len(data)):
            self.wfile.write(data[index : index + 1])
            if self.server.provider._stopping.wait(1.0):
                break
        return 200

    def _send_huge(self) -> int:
        """Sends a 10 MB body without a Content-Length, so only reading reveals its size."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b'{"padding": "')
        block = b"x" * 65536
        for _ in range(HUGE_BYTES // len(block)):
            self.wfile.write(block)
        self.wfile.write(b'"}')
        return 200

    def _reset_connection(self) -> None:
        """Closes the socket with a TCP reset and no reply."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # wfile stays open: the base class flushes it after the handler returns.
        self.rfile.close()
        self.connection.close()
        self.close_connection = True


def _parse_request(kind: str, body: bytes) -> tuple[dict | None, str | None]:
    """Returns (payload, None) for a well-formed chat request, else (payload?, problem)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None, "request body is not valid JSON"
    if not isinstance(payload, dict):
        return None, "request body must be a JSON object"
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return payload, "'model' must be a non-empty string"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return payload, "'messages' must be a non-empty list"
    if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        return payload, "every message needs a string 'content'"
    if _last_user_message(payload) is None:
        return payload, "no message with role 'user'"
    if kind == "ollama" and payload.get("stream") is not False:
        return payload, "this server answers only requests with stream: false"
    if kind == "anthropic" and not isinstance(payload.get("max_tokens"), int):
        return payload, "max_tokens: Field required"
    return payload, None


def _max_tokens(kind: str, payload: dict) -> int | None:
    """Returns the most answer tokens the request allows, if it says."""
    if kind == "ollama":
        options = payload.get("options")
        value = options.get("num_predict") if isinstance(options, dict) else None
    else:
        value = payload.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else None


def _last_user_message(payload: dict) -> str | None:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


def _tokens(prompt: str, text: str | None, usage: tuple[int, int] | None) -> tuple[int, int]:
    """Returns the usage to report: words counted, or the override the test set."""
    return usage or (len(prompt.split()) or 1, len((text or "").split()) or 1)


def _openai_answer(model: str, prompt: str, text: str | None, usage=None) -> dict:
    prompt_tokens, completion_tokens = _tokens(prompt, text, usage)
    return {
        "id": f"chatcmpl-loopback-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _ollama_answer(model: str, prompt: str, text: str | None, usage=None) -> dict:
    prompt_tokens, completion_tokens = _tokens(prompt, text, usage)
    return {
        "model": model,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": prompt_tokens,
        "eval_count": completion_tokens,
    }


def _anthropic_answer(model: str, prompt: str, text: str | None, usage=None) -> dict:
    prompt_tokens, completion_tokens = _tokens(prompt, text, usage)
    return {
        "id": f"msg_loopback_{time.time_ns()}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if text is None else [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
    }


def main(argv: list[str] | None = None) -> None:
    """Runs a loopback provider until interrupted or terminated."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.loopback", description="Serve a loopback LLM provider."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--kind", choices=("openai", "ollama"), default="openai")
    parser.add_argument("--refuse-pattern", help="refuse prompts matching this regex")
    parser.add_argument("--label", default="loopback", help="prefix of every answer")
    parser.add_argument("--judge", action="store_true", help="also answer judge prompts")
    args = parser.parse_args(argv)
    responder = refusing_responder(args.refuse_pattern, args.label) if args.refuse_pattern else None
    if args.judge:
        responder = judging_responder(responder, args.label)
    provider = LoopbackProvider(
        latency_s=args.latency,
        responder=responder,
        label=args.label,
        host=args.host,
        port=args.port,
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with provider:
        url = provider.base_url_openai if args.kind == "openai" else provider.base_url_ollama
        print(f"listening on {url}", flush=True)
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
