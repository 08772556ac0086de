"""Request bodies against a deadline, and a cap on bodies in progress (issue 20; docs/security.md
"Slow uploads", docs/deploy.md "What a front proxy adds").

A gevent worker serves `worker_connections` connections at most. Without a deadline, a client
that sends its headers and then a byte every few seconds holds one of them for as long as it
likes, and a thousand such clients stop the worker answering anything, /health included.
`BodyDeadlines` wraps the app (outside every other middleware):

- **A deadline on the whole body.** Each request with a body gets an absolute deadline when it
  starts, `[intake] body_timeout_s` (10 s: a 1 MiB body at 1 Mbit/s takes 8.4 s), and every
  read of `wsgi.input` is bounded by the time left: bytes arriving do not extend it, so a slow
  drip is cut as surely as silence. Under gevent a read blocked in `recv` is interrupted when
  the time is up; elsewhere (tests, the CLI) the clock is checked between reads. Expiry raises
  `BodyTimeout`: 408 `body_timeout`.
- **A cap on bodies in progress.** At most `[intake] upload_slots` (100) requests per worker
  read their bodies under the full deadline. A request that finds every slot taken is not
  refused, since a normal client's whole body is in the socket already, but gets
  `BUSY_BODY_TIMEOUT_S` (1 s). So however many slow bodies arrive, at most `upload_slots` hold
  their connections for `body_timeout_s`, every other one is cut within a second, and the rest of
  the worker's connections stay free for /health and for everyone else.
- **Close, never drain.** After a request whose body ran out of time, the connection is shut
  down once its answer is written: gunicorn would otherwise read on for up to its keepalive
  timeout to find the next request behind the unread body.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import gevent
import gevent.monkey
from werkzeug.exceptions import RequestTimeout
from werkzeug.wsgi import ClosingIterator

BUSY_BODY_TIMEOUT_S = 1.0


class BodyTimeout(RequestTimeout):
    """The request body did not arrive before its deadline (408 `body_timeout`)."""

    description = "the request body did not arrive in time; send it whole, and faster"


class DeadlineInput:
    """A `wsgi.input` whose every read ends by one absolute deadline."""

    def __init__(self, stream, deadline: float):
        self._stream = stream
        self.deadline = deadline
        self.expired = False

    def read(self, size: int = -1) -> bytes:
        with self._bounded():
            return self._stream.read(size) if size is not None else self._stream.read()

    def readline(self, size: int = -1) -> bytes:
        with self._bounded():
            return self._stream.readline(size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        with self._bounded():
            return self._stream.readlines(hint)

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    @contextmanager
    def _bounded(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._expire()
        if not gevent.monkey.is_module_patched("socket"):
            yield
            return
        timer = gevent.Timeout(remaining)
        timer.start()
        try:
            yield
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise self._expire() from None
        finally:
            timer.close()

    def _expire(self) -> BodyTimeout:
        self.expired = True
        return BodyTimeout()


def has_body(environ: dict) -> bool:
    """True when the request says a body follows (a length above 0, or chunks)."""
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in (environ.get("HTTP_TRANSFER_ENCODING") or "").lower()
    return chunked or (length.isascii() and length.isdigit() and int(length) > 0)


class BodyDeadlines:
    """WSGI middleware: a deadline on each request body and a cap on bodies in progress."""

    def __init__(
        self,
        app,
        timeout_s: float,
        slots: int,
        busy_timeout_s: float = BUSY_BODY_TIMEOUT_S,
    ):
        self.app = app
        self.timeout_s, self.busy_timeout_s = timeout_s, busy_timeout_s
        # Made when the worker builds the app, after gevent patched threading: cooperative.
        self.slots = threading.BoundedSemaphore(slots)

    def __call__(self, environ, start_response):
        if not has_body(environ):
            return self.app(environ, start_response)
        slot = self.slots.acquire(blocking=False)
        timeout = self.timeout_s if slot else self.busy_timeout_s
        body = DeadlineInput(environ["wsgi.input"], time.monotonic() + timeout)
        environ["wsgi.input"] = body
        done = False

        def finish() -> None:
            nonlocal done
            if done:
                return
            done = True
            if slot:
                self.slots.release()
            if body.expired:
                _shut(environ.get("gunicorn.socket"))

        try:
            result = self.app(environ, start_response)
        except BaseException:
            finish()
            raise
        # `finish` runs when the server closes the response, after writing it.
        return ClosingIterator(result, finish)


def _shut(sock) -> None:
    """Ends the connection of a request whose body ran out of time, its answer written."""
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the client went away first
