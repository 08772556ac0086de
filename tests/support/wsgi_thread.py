"""A WSGI app served on a free loopback port by a thread, for in-process tests of an HTTP
layer (the portal's witness): real HTTP, no subprocess."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class QuietHandler(WSGIRequestHandler):
    """Keeps request lines out of the test output."""

    def log_message(self, format: str, *args) -> None:
        """Logs nothing."""


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as a real server would race them."""

    daemon_threads = True


@contextlib.contextmanager
def serving_wsgi(app) -> Iterator[str]:
    """Serves `app` on 127.0.0.1 for the block; yields its base URL."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
