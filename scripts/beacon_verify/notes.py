"""C2SP signed notes: the log's checkpoint (tlog-checkpoint) and witness cosignatures.

A note is its text (ending in a newline), a blank line, then signature lines
`— <key name> base64(4-byte key ID || signature)`; the text ends at the last blank line
(c2sp.org/signed-note). The key ID is SHA-256(name || 0x0A || type || public key)[:4]: type
0x01 for the log's Ed25519 signature, 0x04 for a witness's Ed25519 `cosignature/v1`, whose
signature is an 8-byte big-endian timestamp then Ed25519 over
"cosignature/v1\\ntime <timestamp>\\n" + the note text (c2sp.org/tlog-cosignature).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .common import FETCH_ERRORS, Checks, b64decode, fetch, sha256, verify_ed25519

EM_DASH = "\u2014"
NOTE_ED25519 = 0x01
COSIGNATURE_V1 = 0x04
HEX_ID = re.compile(r"[0-9a-fA-F]{8}")
CHECKPOINT = "/api/v1/log/checkpoint"


def key_id(name: str, kind: int, public_key: bytes) -> bytes:
    """Returns the 4-byte key ID that names a key in signature lines."""
    return sha256(name.encode() + b"\n" + bytes([kind]) + public_key)[:4]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """Returns a note's signed text and its (key name, signature bytes) lines; else raises."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise ValueError("the note has no blank line before its signatures, or no final newline")
    text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH or not parts[1]:
            raise ValueError(f"malformed signature line {line[:80]!r}")
        try:
            signatures.append((parts[1], b64decode(parts[2])))
        except (binascii.Error, ValueError):
            raise ValueError(f"signature line of {parts[1]!r} is not base64") from None
    return text, signatures


def read_checkpoint(text: str) -> tuple[str, int, str]:
    """Returns (origin, size, root hash base64) of a checkpoint text; else raises."""
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or "" in lines:
        raise ValueError("the note body needs origin, size and root hash lines")
    origin, size_text, root_text = lines[:3]
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise ValueError(f"bad tree size {size_text!r}")
    if len(b64decode(root_text)) != 32:
        raise ValueError("the root hash is not 32 bytes")
    return origin, int(size_text), root_text


def open_checkpoint(doc: object, public_key: bytes) -> tuple[str, int, bytes]:
    """Returns (origin, size, root) of a checkpoint whose note `public_key` signed; else raises."""
    if not isinstance(doc, dict) or not isinstance(doc.get("note"), str):
        raise ValueError("no signed note")
    text, signatures = split_note(doc["note"])
    origin, size, root_text = read_checkpoint(text)
    wanted = key_id(origin, NOTE_ED25519, public_key)
    mine = [raw for name, raw in signatures if name == origin and raw[:4] == wanted]
    if not mine:
        raise ValueError("no signature line verifies under the given public key")
    # signed-note: a signature by the known key that fails rejects the whole note.
    if not all(verify_ed25519(public_key, text.encode(), raw[4:]) for raw in mine):
        raise ValueError("a signature line of the given key does not verify")
    if (doc.get("origin"), doc.get("size"), doc.get("root_hash")) != (origin, size, root_text):
        raise ValueError("origin, size or root_hash disagree with the signed note")
    return origin, size, b64decode(root_text)


def fetch_checkpoint(checks: Checks, base: str, public_key: bytes, cosigned: bool = False):
    """Returns the checkpoint JSON the portal serves and its (origin, size, root), or Nones."""
    try:
        doc = fetch(base, CHECKPOINT, cosigned=1 if cosigned else None)
        tree = open_checkpoint(doc, public_key)
    except FETCH_ERRORS as exc:
        checks.check("checkpoint signature", False, f"cannot read or open the checkpoint: {exc}")
        return None, None
    detail = f"note for size {tree[1]} signed by the key"
    checks.check("checkpoint signature", True, detail + (" (?cosigned=1)" if cosigned else ""))
    return doc, tree


@dataclass(frozen=True)
class WitnessKey:
    """A witness's cosignature/v1 verifier key: its name and Ed25519 public key."""

    name: str
    public_key: bytes

    @classmethod
    def parse(cls, vkey: str) -> WitnessKey:
        """Reads a vkey `<name>+<hex key ID>+<base64(0x04 || key)>`; raises ValueError."""
        name, _, rest = vkey.partition("+")
        hex_id, _, material = rest.partition("+")
        if not name or not HEX_ID.fullmatch(hex_id) or any(c.isspace() for c in name):
            raise ValueError("a vkey is <name>+<8 hex digits>+<base64>")
        raw = b64decode(material)
        if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
            raise ValueError("a witness vkey is type 0x04 (cosignature/v1) and a 32-byte key")
        key = cls(name, raw[1:])
        if key_id(name, COSIGNATURE_V1, key.public_key).hex() != hex_id.lower():
            raise ValueError("the vkey's key ID does not match its name and key")
        return key

    def timestamp(self, text: str, signatures: list[tuple[str, bytes]]) -> int | None:
        """Returns the time of this witness's valid cosignature of `text`, or None."""
        wanted = key_id(self.name, COSIGNATURE_V1, self.public_key)
        for name, raw in signatures:
            if name != self.name or raw[:4] != wanted or len(raw) != 4 + 8 + 64:
                continue
            stamp = int.from_bytes(raw[4:12], "big")
            message = f"cosignature/v1\ntime {stamp}\n".encode() + text.encode()
            if stamp < 2**63 and verify_ed25519(self.public_key, message, raw[12:]):
                return stamp
        return None


def check_witnesses(checks: Checks, doc: dict, witnesses: list[WitnessKey], quorum: int) -> None:
    """Checks that `quorum` of the given witnesses validly cosigned the checkpoint's note."""
    text, signatures = split_note(doc["note"])
    cosigned = []
    for witness in dict.fromkeys(witnesses):  # a key given twice counts once
        stamp = witness.timestamp(text, signatures)
        if stamp is None:
            print(f"NOTE witness {witness.name}: no valid cosignature on this checkpoint")
        else:
            print(f"NOTE witness {witness.name}: cosigned at {iso_time(stamp)}")
            cosigned.append(witness.name)
    checks.check(
        "witness quorum",
        len(cosigned) >= quorum,
        f"{len(cosigned)} of {len(set(witnesses))} given witness(es) cosigned the checkpoint "
        f"of size {doc.get('size')}; {quorum} required",
    )


def iso_time(stamp: int) -> str:
    """Returns a POSIX timestamp as UTC ISO-8601, or the number when no date can hold it."""
    try:
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"time {stamp}"
