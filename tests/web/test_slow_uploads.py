"""Issue 20, item 1: slow uploads cannot stop the server.

2,100 connections that each sent `POST /api/v1/jobs` headers with `Content-Length: 1000000`,
then one byte every 5 s, made every /health time out: a body is read with no deadline, and a
gevent worker serves gunicorn's default 1,000 connections at most. Here 1,100 such uploads (one
gunicorn worker, as tests/support/live_server.py starts it) come from 250 loopback addresses, as
a spread-out attacker's would (so the per-address submission limit is not what stops them),
each sending a byte every 2 s (so only a deadline on the whole body, not one between reads, cuts
them). While they are held, /health and a normal signed submission must be answered, and every
slow upload must be cut off by the server within SLOW_CUT_S.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

import pytest
import requests

from tests.support.apps import THREE_REGIONS, Signer, spec_3x3
from tests.support.live_server import serving

pytestmark = pytest.mark.live

UPLOADS = 1_100
ADDRESSES = 250
DRIP_S = 2.0
# A whole-body deadline of about 10 s, and room for a loaded two-core machine.
SLOW_CUT_S = 25.0
HEALTH_TIMEOUT_S = 5.0
SUBMIT_TIMEOUT_S = 10.0
HEADERS = (
    b"POST /api/v1/jobs HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 1000000\r\n"
    b"\r\n"
    b"{"
)


class SlowUploads:
    """Holds many uploads open from one thread, a byte every DRIP_S; notes when each is cut."""

    def __init__(self, host: str, port: int, count: int):
        self.selector = selectors.DefaultSelector()
        self.opened: dict[socket.socket, float] = {}
        self.cut: dict[socket.socket, float] = {}
        self.refused = 0
        for n in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((f"127.0.0.{2 + n % ADDRESSES}", 0))
            try:
                sock.connect((host, port))
                sock.sendall(HEADERS)
            except OSError:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            self.opened[sock] = time.monotonic()
            self.selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_drip = time.monotonic() + DRIP_S
        while not self._stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                self._mark_cut(key.fileobj)  # an answer, or the server closed it
            if time.monotonic() >= next_drip:
                next_drip += DRIP_S
                for sock in [s for s in self.opened if s not in self.cut]:
                    try:
                        sock.send(b" ")
                    except OSError:
                        self._mark_cut(sock)

    def _mark_cut(self, sock: socket.socket) -> None:
        if sock not in self.cut:
            self.cut[sock] = time.monotonic()
            self.selector.unregister(sock)

    def held(self) -> int:
        return len(self.opened) - len(self.cut)

    def cut_within(self, seconds: float) -> int:
        return sum(1 for s, t in self.cut.items() if t - self.opened[s] <= seconds)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.opened:
            sock.close()
        self.selector.close()


def timed(call):
    """Returns (seconds, status or the exception's name)."""
    start = time.monotonic()
    try:
        outcome = call().status_code
    except requests.RequestException as exc:
        outcome = type(exc).__name__
    return round(time.monotonic() - start, 2), outcome


def test_slow_uploads_leave_health_and_submissions_answered_and_are_cut(tmp_path):
    signer = Signer()
    env = {
        "BEACON_CONFIG": str(THREE_REGIONS),
        "BEACON_TRUSTED_KEYS": json.dumps([signer.trusted_entry()]),
        "BEACON_SEMANTIC": "0",
    }
    with serving(env, tmp_path, stop_timeout=20) as live:
        host, port = live.url.removeprefix("http://").split(":")
        assert timed(lambda: requests.get(f"{live.url}/health", timeout=5))[1] == 200
        slow = SlowUploads(host, int(port), UPLOADS)
        try:
            time.sleep(3.0)
            held_at_start = slow.held()
            health = [
                timed(lambda: requests.get(f"{live.url}/health", timeout=HEALTH_TIMEOUT_S))
                for _ in range(3)
            ]
            body = signer.body(spec_3x3(id="normal-during-slow-uploads"))
            submission = timed(
                lambda: requests.post(
                    f"{live.url}/api/v1/jobs",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=SUBMIT_TIMEOUT_S,
                )
            )
            deadline = slow.opened[next(iter(slow.opened))] + SLOW_CUT_S
            while slow.held() and time.monotonic() < deadline:
                time.sleep(0.5)
            cut = slow.cut_within(SLOW_CUT_S)
            opened = len(slow.opened)
        finally:
            slow.close()
    report = (
        f"{opened} slow uploads opened ({slow.refused} refused at connect), {held_at_start} "
        f"still held after 3 s; /health (s, status): {health}; a normal submission: "
        f"{submission}; slow uploads cut by the server within {SLOW_CUT_S:g} s: {cut}"
    )
    print(report)
    assert opened >= UPLOADS * 0.9, report
    # Today: /health times out, the submission times out, and no slow upload is ever cut.
    assert all(status == 200 for _, status in health), report
    assert submission[1] == 202, report
    assert cut == opened, report
