"""Kept-alive HTTP connections to the providers: one small pool per scheme, host and port.

A provider call used to open a new connection (and a new `requests` session) every time. Here
each worker process keeps the connections a provider left open (HTTP/1.1 keep-alive) and sends
the next call over one of them. `post()` returns the status, the headers, the body and the
peer address (the IP and port the answer came from).

The rule for a pooled connection the provider closed:

- Before reuse, a pooled connection that has been idle longer than `IDLE_MAX_S`, or whose
  socket is already readable (the provider closed it or sent something unasked), is dropped
  and another one taken or opened.
- When a request sent over a reused connection fails before any byte of the response arrived
  (the connection was closed or reset while sending, or before the status line), it is sent
  once more, on a new connection, within the same deadline. The provider closing an idle
  connection just as the request leaves looks exactly like this, and the request then never
  reached it. A failure on a new connection, or after any response byte, is never repeated
  here: it goes back to the engine, which counts it as an attempt.

Under gevent the sockets are cooperative; without it (tests calling providers directly) they
block with timeouts. Either way the caller bounds the whole call by its deadline.
"""

from __future__ import annotations

import atexit
import http.client
import select
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Shorter than the keep-alive timeouts servers commonly use (uvicorn 5 s, nginx 75 s), so a
# pooled connection is rarely one the provider is about to close.
IDLE_MAX_S = 4.0
MAX_IDLE_PER_HOST = 64
CHUNK_BYTES = 65536

# Closed or reset before any response byte: the cases a reused connection is retried for.
_NOTHING_RECEIVED = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


class TooLarge(Exception):
    """The response body passed the caller's limit."""


class DeadlineExceeded(Exception):
    """The call's own time budget ran out."""


class _Unanswered(Exception):
    """The connection closed or reset before any byte of the response arrived."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    peer: tuple | None
    reused: bool


@dataclass
class _Idle:
    conn: http.client.HTTPConnection
    since: float


_idle: dict[tuple[str, str, int], list[_Idle]] = {}
_tls: ssl.SSLContext | None = None


def _key(url: str) -> tuple[tuple[str, str, int], str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme, parts.hostname, port), path


def _new(key: tuple[str, str, int], timeout: float) -> http.client.HTTPConnection:
    global _tls
    scheme, host, port = key
    if scheme == "https":
        if _tls is None:
            _tls = ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=_tls)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _usable(idle: _Idle, now: float) -> bool:
    sock = idle.conn.sock
    if sock is None or now - idle.since > IDLE_MAX_S:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    # An idle connection has nothing to read unless the provider closed it (EOF) or misbehaved.
    return not readable


def _checkout(key: tuple[str, str, int], timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    stack = _idle.get(key)
    now = time.monotonic()
    while stack:
        idle = stack.pop()
        if _usable(idle, now):
            return idle.conn, True
        idle.conn.close()
    return _new(key, timeout), False


def _checkin(key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
    stack = _idle.setdefault(key, [])
    if len(stack) >= MAX_IDLE_PER_HOST:
        conn.close()
        return
    stack.append(_Idle(conn, time.monotonic()))


def close_idle() -> None:
    """Closes every kept-alive connection of this process (at exit, and for tests)."""
    for stack in list(_idle.values()):
        while stack:
            stack.pop().conn.close()


atexit.register(close_idle)


def idle_count(url: str) -> int:
    """Returns how many kept-alive connections to `url`'s host wait in this process's pool."""
    return len(_idle.get(_key(url)[0], []))


def remaining(deadline: float) -> float:
    """Returns the seconds left before `deadline` (time.monotonic), or raises when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded
    return left


def post(url: str, body: bytes, headers: dict, deadline: float, max_body: int) -> Response:
    """POSTs `body` over a pooled connection and returns the whole answer; see the module doc
    for when a request is sent a second time. Raises OSError, http.client.HTTPException,
    ValueError (a URL that is not http or https), TooLarge or DeadlineExceeded."""
    key, path = _key(url)
    conn, reused = _checkout(key, remaining(deadline))
    try:
        return _exchange(key, conn, reused, path, body, headers, deadline, max_body)
    except _Unanswered as exc:
        if not reused:
            raise exc.__cause__ from None
    # A reused connection the provider had already closed: once more, on a new connection.
    conn = _new(key, remaining(deadline))
    try:
        return _exchange(key, conn, False, path, body, headers, deadline, max_body)
    except _Unanswered as exc:
        raise exc.__cause__ from None


def _exchange(key, conn, reused, path, body, headers, deadline, max_body) -> Response:
    kept = False
    response = None
    try:
        conn.timeout = remaining(deadline)
        if conn.sock is None:
            conn.connect()
        sock = conn.sock
        sock.settimeout(remaining(deadline))
        peer = _peer(sock)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
        except _NOTHING_RECEIVED as exc:
            raise _Unanswered from exc
        declared = response.getheader("Content-Length", "")
        if declared.isdigit() and int(declared) > max_body:
            raise TooLarge
        data = bytearray()
        while True:
            # A socket timeout alone restarts on every byte; shrinking it to the remaining
            # budget before each read keeps a slow drip inside the deadline.
            sock.settimeout(remaining(deadline))
            chunk = response.read1(CHUNK_BYTES)
            if not chunk:
                break
            data += chunk
            if len(data) > max_body:
                raise TooLarge
        # The whole body read (its length reached, or the last chunk): the connection is free.
        if not response.will_close and (response.isclosed() or response.length == 0):
            response.close()
            _checkin(key, conn)
            kept = True
        return Response(response.status, response.headers, bytes(data), peer, reused)
    finally:
        if not kept:
            # The response holds the socket too (after "Connection: close" it alone does).
            if response is not None:
                response.close()
            conn.close()


def _peer(sock) -> tuple | None:
    try:
        return sock.getpeername()
    except OSError:
        return None
