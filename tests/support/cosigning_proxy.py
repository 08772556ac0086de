"""A stand-in for the portal's witness side (SPEC section 9, "Witnesses") until the portal has
one: an HTTP proxy in front of a live portal that passes every GET through, except
`GET /api/v1/log/checkpoint` (with or without `?cosigned=1`), where it asks each witness to
cosign the portal's current checkpoint (tlog-witness add-checkpoint, with the consistency proof
the portal serves from the size that witness last cosigned) and serves the portal's JSON with
the cosignature lines appended to `note` and `"witnessed": {name: timestamp}`: the shape the
verifier expects from the portal.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.c2sp import (
    SIZE_TYPE,
    Vkey,
    WitnessRefused,
    add_checkpoint_body,
    cosignatures,
    post,
)

CHECKPOINT = "/api/v1/log/checkpoint"


def get(url: str) -> tuple[int, bytes, str]:
    """Returns (status, body, content type) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), error.headers.get("Content-Type", "")


class Cosigner:
    """Keeps, per witness, the size it last cosigned, and cosigns the portal's checkpoints."""

    def __init__(self, portal: str, witnesses: list[tuple[str, Vkey]]):
        self.portal = portal
        self.witnesses = witnesses
        self.known = {url: 0 for url, _ in witnesses}
        self.lock = threading.Lock()

    def checkpoint(self) -> dict:
        """Returns the portal's checkpoint JSON with every witness's cosignature on its note."""
        with self.lock:
            _, body, _ = get(self.portal + CHECKPOINT)
            doc = json.loads(body)
            lines = [self.cosign(url, vkey, doc) for url, vkey in self.witnesses]
            doc["note"] += "".join(lines)
            doc["witnessed"] = cosignatures(doc["note"], [vkey for _, vkey in self.witnesses])
            return doc

    def cosign(self, url: str, vkey: Vkey, doc: dict) -> str:
        """Returns the witness's verified cosignature line, retrying once after a 409."""
        try:
            line = self.submit(url, self.known[url], doc)
        except WitnessRefused as refused:
            if refused.status != 409 or refused.content_type != SIZE_TYPE:
                raise
            line = self.submit(url, int(refused.body), doc)
        if vkey.name not in cosignatures(doc["note"] + line, [vkey]):
            raise AssertionError(f"the witness {vkey.name} answered no valid cosignature")
        self.known[url] = doc["size"]
        return line

    def submit(self, url: str, old: int, doc: dict) -> str:
        """Posts the portal's checkpoint from `old` with the portal's consistency proof."""
        proof: list[bytes] = []
        if 0 < old < doc["size"]:
            query = f"?old={old}&new={doc['size']}"
            _, body, _ = get(f"{self.portal}/api/v1/log/proof/consistency{query}")
            proof = [base64.b64decode(h) for h in json.loads(body)["hashes"]]
        return post(f"{url}/add-checkpoint", add_checkpoint_body(old, proof, doc["note"]))


class Handler(BaseHTTPRequestHandler):
    """Passes GETs to the portal; cosigns the checkpoint on the way back."""

    server: ProxyServer

    def do_GET(self) -> None:
        """Serves the cosigned checkpoint, or what the portal answers."""
        if self.path.split("?")[0] == CHECKPOINT:
            status, body = 200, json.dumps(self.server.cosigner.checkpoint()).encode()
            kind = "application/json"
        else:
            status, body, kind = get(self.server.cosigner.portal + self.path)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """Keeps request lines out of the test output."""


class ProxyServer(ThreadingHTTPServer):
    """A threaded HTTP server holding one Cosigner."""

    daemon_threads = True

    def __init__(self, cosigner: Cosigner):
        super().__init__(("127.0.0.1", 0), Handler)
        self.cosigner = cosigner


@contextlib.contextmanager
def cosigning_proxy(portal: str, witnesses: list[tuple[str, Vkey]]) -> Iterator[str]:
    """Serves the proxy on a free loopback port for the block; yields its base URL."""
    server = ProxyServer(Cosigner(portal, witnesses))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
