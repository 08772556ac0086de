"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that verifies every delivery
with the `standardwebhooks` package's own verifier and answers as a test scripts it: a status
per request in turn, or a hang (no answer until the test lets go)."""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Receiver:
    """Records every POST: its headers, its body, whether its signature verified."""

    def __init__(self, secret: str):
        self.verifier = Webhook(secret)
        self.requests: list[dict] = []
        self.script: deque = deque()  # statuses, or "hang", used one per request
        self.hang_when: str | None = None  # hang every request whose body holds this text
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/beacon"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def delivered(self) -> list[dict]:
        """The verified requests answered 2xx, as parsed JSON."""
        with self._lock:
            return [r["json"] for r in self.requests if r["verified"] and r["status"] < 300]

    def _answer_for(self, body: str) -> int | str:
        with self._lock:
            if self.hang_when and self.hang_when in body:
                return "hang"
            return self.script.popleft() if self.script else 200


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - signature set by the base class
        """Keeps request logs out of test output."""

    def do_POST(self):
        """Verifies the delivery, records it and answers as scripted."""
        receiver = self.server.receiver
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items()}
        try:
            parsed = receiver.verifier.verify(raw, headers)
            verified = True
        except WebhookVerificationError:
            parsed, verified = json.loads(raw or b"null"), False
        answer = receiver._answer_for(raw.decode("utf-8", "replace"))
        record = {"path": self.path, "headers": headers, "json": parsed, "verified": verified}
        record["status"] = 0 if answer == "hang" else answer
        with receiver._lock:
            receiver.requests.append(record)
        if answer == "hang":
            receiver.release.wait(120)
            self.close_connection = True
            return
        self.send_response(answer)
        self.send_header("Content-Length", "0")
        self.end_headers()
