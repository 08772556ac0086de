"""C2SP signed notes, checkpoints, verifier keys and cosignature/v1, byte for byte.

What the witness protocol (C2SP tlog-witness) exchanges, written from c2sp.org/signed-note,
/tlog-checkpoint and /tlog-cosignature, shared by the portal's witness client
(portal/provenance/cosigning.py) and its own witness (portal/provenance/witness.py):

- a note is text ending in a newline, a blank line, then signature lines
  `— <key name> base64(4-byte key ID || signature)`; the text ends at the note's last blank
  line, and nothing in it is a control character but the newline;
- key ID = SHA-256(key name || 0x0A || type || public key)[:4]: type 0x01 signs the note text
  (a log's checkpoint), type 0x04 is a witness's timestamped cosignature/v1;
- a vkey (verifier key) is `<name>+<hex key ID>+<base64(type || public key)>`;
- a cosignature/v1 signs "cosignature/v1\\ntime <t>\\n" followed by the checkpoint text, and its
  signature bytes are the 8-byte big-endian timestamp, then the 64-byte Ed25519 signature.

The portal's own checkpoint note is written by `tlog.note`, whose bytes do not change here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"
DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
HEX_ID = re.compile(r"[0-9a-f]{8}")
MAX_SIGNATURES = 32  # signed-note asks verifiers to accept at least 16
PRIVATE_PREFIX = "PRIVATE+KEY+"


class NoteError(ValueError):
    """Text that is not the note, checkpoint, key or line its specification describes."""


def b64(data: bytes) -> str:
    """Returns standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Returns the bytes of canonical standard base64 text; raises NoteError otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"not standard base64: {text[:60]!r}") from None
    if b64(raw) != text:
        raise NoteError(f"not canonical base64: {text[:60]!r}")
    return raw


def decimal(text: str) -> int:
    """Returns a size written in ASCII decimal without leading zeroes (below 2**63)."""
    if not DECIMAL.fullmatch(text) or int(text) >= 2**63:
        raise NoteError(f"not a decimal size: {text[:30]!r}")
    return int(text)


def key_id(name: str, kind: int, public_key: bytes) -> bytes:
    """Returns the 4-byte key ID: SHA-256(name || 0x0A || type || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public_key).digest()[:4]


def check_name(name: str) -> str:
    """Returns a key name that signed-note allows (non-empty, no space, no '+'), else raises."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"a key name is non-empty, without spaces or '+': {name!r}")
    return name


@dataclass(frozen=True)
class Vkey:
    """A verifier key: a name, a signature type (0x01 or 0x04) and an Ed25519 public key."""

    name: str
    kind: int
    public_key: bytes

    @property
    def id(self) -> bytes:
        """Returns the key's 4-byte key ID."""
        return key_id(self.name, self.kind, self.public_key)

    def text(self) -> str:
        """Returns the vkey as signed-note writes it."""
        return f"{self.name}+{self.id.hex()}+{b64(bytes([self.kind]) + self.public_key)}"

    @classmethod
    def parse(cls, text: str, kind: int | None = None) -> Vkey:
        """Reads `<name>+<hex key ID>+<base64(type || key)>` (of type `kind` when given)."""
        parts = text.strip().split("+", 2)  # base64 may hold '+'; a name and an ID never do
        if len(parts) != 3 or not HEX_ID.fullmatch(parts[1].lower()):
            raise NoteError("a vkey reads <name>+<8 hex digits>+<base64(type || key)>")
        raw = unb64(parts[2])
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("an Ed25519 vkey is a type byte (0x01 or 0x04) and 32 bytes")
        if kind is not None and raw[0] != kind:
            raise NoteError(f"this must be a type 0x{kind:02x} vkey, not 0x{raw[0]:02x}")
        vkey = cls(check_name(parts[0]), raw[0], raw[1:])
        if vkey.id.hex() != parts[1].lower():
            raise NoteError("the vkey's key ID does not match its name and key")
        return vkey


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint text: origin, tree size, root hash and any extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """Returns the checkpoint's note text, each line ending in a newline."""
        return "\n".join([self.origin, str(self.size), b64(self.root), *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Reads at least three non-empty lines: origin, size, base64 of a 32-byte root."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or "" in lines[:-1]:
            raise NoteError("a checkpoint is three or more non-empty lines")
        root = unb64(lines[2])
        if len(root) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        return cls(lines[0], decimal(lines[1]), root, tuple(lines[3:-1]))


@dataclass(frozen=True)
class Note:
    """A signed note: its text (with the final newline) and its (key name, bytes) signatures."""

    text: str
    signatures: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, note: str) -> Note:
        """Splits a note at its last blank line and reads every signature line."""
        if any(ord(c) < 0x20 and c != "\n" for c in note):
            raise NoteError("a note holds no control character but the newline")
        cut = note.rfind("\n\n")
        if cut < 0 or not note.endswith("\n") or cut + 2 == len(note):
            raise NoteError("a note is text, a blank line and signature lines, ending in newline")
        lines = note[cut + 2 : -1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"more than {MAX_SIGNATURES} signatures")
        return cls(note[: cut + 1], tuple(signature_line(line) for line in lines))

    def signed_by(self, vkey: Vkey) -> bool:
        """Says whether a type 0x01 key signed the text; a failing line of that key raises."""
        found = False
        for name, raw in self.signatures:
            if name != vkey.name or raw[:4] != vkey.id:
                continue  # another key's line: signed-note says to ignore it
            if not verifies(vkey.public_key, self.text.encode(), raw[4:]):
                raise NoteError(f"a signature by the known key {name} does not verify")
            found = True
        return found

    def cosigned_at(self, vkey: Vkey) -> int | None:
        """Returns the newest timestamp of the valid cosignatures by a type 0x04 key, or None."""
        stamps = []
        for name, raw in self.signatures:
            if name != vkey.name or raw[:4] != vkey.id or len(raw) != 4 + 8 + 64:
                continue
            stamp = int.from_bytes(raw[4:12], "big")
            if stamp < 2**63 and verifies(vkey.public_key, cosigned(self.text, stamp), raw[12:]):
                stamps.append(stamp)
        return max(stamps) if stamps else None


def signature_line(line: str) -> tuple[str, bytes]:
    """Reads `— <key name> <base64>` into (name, key ID || signature bytes)."""
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != DASH:
        raise NoteError(f"not a signature line: {line[:80]!r}")
    raw = unb64(parts[2])
    if len(raw) < 5:
        raise NoteError("a signature holds a key ID and signature bytes")
    return check_name(parts[1]), raw


def verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Says whether `signature` is an Ed25519 signature of `message` by `public_key`."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def cosigned(text: str, timestamp: int) -> bytes:
    """Returns the bytes a cosignature/v1 signs: its two header lines, then the checkpoint."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


def cosign_line(name: str, seed: bytes, text: str, timestamp: int) -> str:
    """Returns the cosignature/v1 line of the key `seed` named `name` over checkpoint `text`."""
    key = nacl.signing.SigningKey(seed)
    signature = key.sign(cosigned(text, timestamp)).signature
    kid = key_id(name, COSIGNATURE_V1, bytes(key.verify_key))
    return f"{DASH} {name} {b64(kid + timestamp.to_bytes(8, 'big') + signature)}\n"


def log_vkey(origin: str, public_key: bytes) -> Vkey:
    """Returns the type 0x01 vkey that checks a log's checkpoints (named by its origin)."""
    return Vkey(check_name(origin), ED25519, public_key)


def private_key_text(name: str, seed: bytes) -> str:
    """Returns a witness key file's text: `PRIVATE+KEY+<name>+<hex ID>+<base64(0x04 || seed)>`.

    The form of Go's golang.org/x/mod/sumdb/note signer keys, with the cosignature/v1 type."""
    public = bytes(nacl.signing.SigningKey(seed).verify_key)
    kid = key_id(check_name(name), COSIGNATURE_V1, public).hex()
    return f"{PRIVATE_PREFIX}{name}+{kid}+{b64(bytes([COSIGNATURE_V1]) + seed)}\n"


def read_private_key(text: str) -> tuple[str, bytes]:
    """Returns (name, seed) of a witness key file's text; checks its key ID."""
    body = text.strip()
    if not body.startswith(PRIVATE_PREFIX):
        raise NoteError(f"a witness key file starts with {PRIVATE_PREFIX}")
    parts = body[len(PRIVATE_PREFIX) :].split("+", 2)
    if len(parts) != 3 or not HEX_ID.fullmatch(parts[1]):
        raise NoteError("a witness key reads PRIVATE+KEY+<name>+<hex ID>+<base64>")
    raw = unb64(parts[2])
    if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
        raise NoteError("a witness key is type 0x04 and a 32-byte Ed25519 seed")
    name, seed = check_name(parts[0]), raw[1:]
    if private_key_text(name, seed).strip() != body:
        raise NoteError("the key ID does not match the key's name and seed")
    return name, seed


def witness_vkey(name: str, seed: bytes) -> Vkey:
    """Returns the cosignature/v1 vkey of a witness key."""
    return Vkey(check_name(name), COSIGNATURE_V1, bytes(nacl.signing.SigningKey(seed).verify_key))
