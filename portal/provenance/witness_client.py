"""One exchange with one witness, as C2SP tlog-witness specifies `add-checkpoint` (the log's side).

`exchange` posts the checkpoint note with the old size the portal believes the witness holds and
the consistency proof from it, and returns the witness's verified cosignature line. A 409 names
the size the witness holds (`text/x.tlog.size`): when that size is within this tree, the request
is made once more from it, with the proof from that size; when it is larger, the log shrank
under the witness (a rollback, or another log under the same origin) and nothing can be proved.
Any other answer, an unreachable witness or an answer without a valid cosignature by the
witness's key is a `Refused` the caller counts. No database here: `proof_from(size)` supplies
the proofs, so the caller holds no transaction while the request is in flight.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from portal.provenance.notes import Note, NoteError, b64, decimal, signature_line
from portal.provenance.witness_config import WitnessSettings

SIZE_TYPE = "text/x.tlog.size"
TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 64 * 1024
MAX_PROOF_LINES = 63


class Refused(Exception):
    """The witness did not cosign: `status` (0 when it did not answer), and the size it said it
    holds when a 409 named one."""

    def __init__(self, status: int, message: str, held: int | None = None):
        super().__init__(message)
        self.status, self.held = status, held


def request_body(old: int, proof: list[bytes], note: str) -> bytes:
    """Returns an add-checkpoint body: `old <size>`, one base64 proof hash a line, a blank
    line, then the checkpoint note with its signatures."""
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError("a consistency proof has at most 63 hashes")
    lines = [f"old {old}", *(b64(h) for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def post(session: requests.Session, url: str, body: bytes) -> tuple[int, str, str]:
    """POSTs one request; returns (status, content type, at most 64 KiB of the answer's text)."""
    try:
        with session.post(
            url,
            data=body,
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=TIMEOUT_S,
            stream=True,
            allow_redirects=False,
        ) as response:
            raw = response.raw.read(MAX_ANSWER_BYTES, decode_content=True)
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            return response.status_code, kind, raw.decode("utf-8", errors="replace")
    except requests.RequestException as exc:
        raise Refused(0, f"no answer from {url}: {type(exc).__name__}") from None


def exchange(
    session: requests.Session,
    witness: WitnessSettings,
    note: str,
    size: int,
    old: int,
    proof_from: Callable[[int], list[bytes]],
) -> tuple[str, int]:
    """Asks `witness` to cosign the checkpoint `note` of `size` from `old`; returns its
    cosignature line and timestamp, or raises Refused."""
    status, kind, answer = post(session, witness.add_checkpoint_url, body(old, note, proof_from))
    if status == 409:
        held = held_size(kind, answer)
        if held == old:
            # Only a witness older than tlog-witness v1.1.0 says 409 here: same size, other root.
            raise Refused(409, f"the witness holds another tree of size {held}", held)
        if held > size:
            raise Refused(
                409,
                f"the witness holds size {held}, larger than this log's {size}: the log was "
                "rolled back (or another log signs under its origin)",
                held,
            )
        status, kind, answer = post(
            session, witness.add_checkpoint_url, body(held, note, proof_from)
        )
        old = held
        if status == 409:
            raise Refused(409, f"the witness moved again: {answer.strip()[:40]!r}", None)
    if status != 200:
        what = {
            400: "said the request is malformed",
            403: "does not trust this log's key",
            404: "does not know this log's origin",
            422: f"refused the tree: it is not consistent with the size {old} it holds",
        }.get(status, "failed")
        raise Refused(status, f"{status}: the witness {what}: {answer.strip()[:200]!r}")
    return verified_line(witness, note, answer)


def body(old: int, note: str, proof_from: Callable[[int], list[bytes]]) -> bytes:
    """Returns the request body from `old`, with the proof `proof_from(old)` supplies."""
    return request_body(old, proof_from(old), note)


def held_size(kind: str, answer: str) -> int:
    """Reads the size a 409 names (`text/x.tlog.size`: the decimal size and a newline)."""
    if kind != SIZE_TYPE or not answer.endswith("\n"):
        raise Refused(409, f"409 without a {SIZE_TYPE} body: {answer.strip()[:80]!r}")
    try:
        return decimal(answer[:-1])
    except NoteError:
        raise Refused(409, f"409 with a malformed size: {answer.strip()[:80]!r}") from None


def verified_line(witness: WitnessSettings, note: str, answer: str) -> tuple[str, int]:
    """Returns the answer's valid cosignature/v1 line by the witness's key, and its timestamp.

    Lines by other keys are ignored, as the protocol asks; a line of the witness's key that
    does not verify is ignored too, and with no valid line the witness is said to have refused.
    """
    text = Note.parse(note).text
    vkey = witness.vkey
    for line in answer.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        try:
            name, raw = signature_line(line[:-1])
        except NoteError:
            continue
        if name != vkey.name or raw[:4] != vkey.id:
            continue
        stamp = Note(text, ((name, raw),)).cosigned_at(vkey)
        if stamp is not None:
            return line, stamp
    raise Refused(200, "200 without a valid cosignature by the witness's key")
