"""A small C2SP tlog-witness for the tests, written from c2sp.org/tlog-witness (v1.1.0) with
tests/support/c2sp.py, apart from the portal's code: a test starts it on 127.0.0.1 (a free
port, one thread per request) and any log, the portal's or tests/support/c2sp.Log, asks it to
cosign.

`POST /add-checkpoint` checks, in the specification's order: the body's form (400), the
origin (404 unless configured), the log's signature (403), old size <= checkpoint size (400),
old size = the size it last cosigned (409, that size as text/x.tlog.size), the empty tree's
root at size 0, no proof from size 0, the consistency proof or equal roots at equal size
(422); then it records the new size and root and answers one cosignature/v1 line.
`GET /<hex SHA-256 of the origin>/checkpoint` serves the latest cosigned checkpoint.
The check and the update happen under one lock: two racing requests cannot roll it back.
State lives in memory, or in a JSON file that survives a restart when `state_path` is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.c2sp import (
    COSIGNATURE_V1,
    EMPTY_ROOT,
    MAX_PROOF_LINES,
    SIZE_TYPE,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Vkey,
    b64,
    decimal,
    unb64,
)
from tests.support.rfc9162 import verify_consistency

MAX_BODY = 64 * 1024
PLAIN = "text/plain; charset=utf-8"


class Refusal(Exception):
    """An add-checkpoint request the witness answers with an error status."""

    def __init__(self, status: int, message: str, content_type: str = PLAIN):
        super().__init__(message)
        self.status, self.content_type = status, content_type


def parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """Returns (old size, proof hashes, checkpoint note) of an add-checkpoint body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "the body is not UTF-8") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise Refusal(400, "no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise Refusal(400, "the first line is not `old <size>`")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, "more than 63 proof lines")
    try:
        old = decimal(lines[0][4:])
        proof = [unb64(line) for line in lines[1:]]
    except NoteError as exc:
        raise Refusal(400, str(exc)) from None
    if any(len(h) != 32 for h in proof):
        raise Refusal(400, "a proof line is not a 32-byte hash")
    return old, proof, note


class Witness:
    """A witness: its cosigner key, the log keys it trusts per origin, and what it cosigned."""

    def __init__(
        self,
        name: str,
        logs: dict[str, list[Vkey]],
        state_path: Path | None = None,
        signer: Signer | None = None,
    ):
        self.signer = signer or Signer(name)
        self.logs = logs
        self.state_path = state_path
        self.lock = threading.Lock()
        self.state: dict[str, dict] = {}
        if state_path is not None and state_path.exists():
            self.state = json.loads(state_path.read_text("utf-8"))

    @property
    def vkey(self) -> Vkey:
        """Returns the witness's cosignature/v1 vkey."""
        return self.signer.vkey(COSIGNATURE_V1)

    def add_checkpoint(self, body: bytes) -> str:
        """Cosigns the checkpoint of an add-checkpoint body; returns the cosignature line."""
        old, proof, note = parse_request(body)
        checkpoint, parsed = self.verified(note)
        if old > checkpoint.size:
            raise Refusal(400, f"old size {old} is beyond the checkpoint's {checkpoint.size}")
        with self.lock:
            known = self.state.get(checkpoint.origin, {"size": 0, "root": b64(EMPTY_ROOT)})
            if old != known["size"]:
                raise Refusal(409, f"{known['size']}\n", SIZE_TYPE)
            self.check_consistency(old, unb64(known["root"]), checkpoint, proof)
            line = self.signer.cosign_line(parsed.text, int(time.time()))
            self.state[checkpoint.origin] = {
                "size": checkpoint.size,
                "root": b64(checkpoint.root),
                "note": note + line,
            }
            self.save()  # persisted before the answer, as the specification requires
            return line

    def verified(self, note: str) -> tuple[Checkpoint, Note]:
        """Returns the checkpoint if a trusted key of its origin signed it; else refuses."""
        try:
            parsed = Note.parse(note)
            checkpoint = Checkpoint.parse(parsed.text)
        except NoteError as exc:
            raise Refusal(400, f"malformed checkpoint: {exc}") from None
        keys = self.logs.get(checkpoint.origin)
        if keys is None:
            raise Refusal(404, f"unknown log origin {checkpoint.origin!r}")
        try:
            signed = any(parsed.verified_by(k) for k in keys)
        except NoteError as exc:
            raise Refusal(403, str(exc)) from None
        if not signed:
            raise Refusal(403, "no signature by a key this witness trusts for the origin")
        return checkpoint, parsed

    @staticmethod
    def check_consistency(old: int, old_root: bytes, checkpoint: Checkpoint, proof) -> None:
        """Refuses (422) a checkpoint that does not extend the tree the witness holds."""
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            raise Refusal(422, "a tree of size 0 has the empty tree's root")
        if old == 0:
            if proof:
                raise Refusal(422, "a proof from size 0 must be empty")
            return
        if not verify_consistency(old, checkpoint.size, old_root, checkpoint.root, proof):
            raise Refusal(422, f"no consistency from {old} to {checkpoint.size}")

    def save(self) -> None:
        """Writes the state file atomically (a new file renamed over the old one)."""
        if self.state_path is None:
            return
        scratch = self.state_path.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.state), "utf-8")
        os.replace(scratch, self.state_path)

    def latest(self, origin_hash: str) -> str | None:
        """Returns the newest cosigned checkpoint note of the log whose origin hashes so."""
        with self.lock:
            for origin, known in self.state.items():
                if hashlib.sha256(origin.encode()).hexdigest() == origin_hash:
                    return known["note"]
        return None


class Handler(BaseHTTPRequestHandler):
    """The witness's HTTP interface."""

    server: WitnessServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Answers add-checkpoint."""
        if self.path != "/add-checkpoint":
            self.answer(404, "not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413, "too large\n")
            return
        try:
            self.answer(200, self.server.witness.add_checkpoint(self.rfile.read(length)))
        except Refusal as refusal:
            self.answer(refusal.status, str(refusal), refusal.content_type)

    def do_GET(self) -> None:
        """Answers the monitoring endpoint, `/<origin hash>/checkpoint`."""
        parts = self.path.strip("/").split("/")
        note = None
        if len(parts) == 2 and parts[1] == "checkpoint":
            note = self.server.witness.latest(parts[0])
        if note is None:
            self.answer(404, "nothing cosigned for that log\n")
        else:
            self.answer(200, note)

    def answer(self, status: int, text: str, content_type: str = PLAIN) -> None:
        """Sends a whole text answer with its length, so keep-alive connections work."""
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        """Keeps request lines out of the test output."""


class WitnessServer(ThreadingHTTPServer):
    """A threaded HTTP server holding one Witness."""

    daemon_threads = True

    def __init__(self, witness: Witness):
        super().__init__(("127.0.0.1", 0), Handler)
        self.witness = witness

    @property
    def url(self) -> str:
        """Returns the server's base URL."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@contextlib.contextmanager
def serving(witness: Witness) -> Iterator[str]:
    """Serves `witness` on a free loopback port for the block; yields its base URL."""
    server = WitnessServer(witness)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
