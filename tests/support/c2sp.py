"""C2SP signed-note, tlog-checkpoint, tlog-cosignature and a tlog-witness log client, written
for the tests from the specifications alone (c2sp.org/signed-note, /tlog-checkpoint,
/tlog-cosignature, /tlog-witness), apart from the portal's code and scripts/verify_receipt.py,
as tests/support/rfc9162.py is for RFC 9162. Plain on purpose: read it next to the specifications.

- a note is text ending in a newline, a blank line, then signature lines
  `— <key name> base64(4-byte key ID || signature)`; the text ends at the last blank line;
- key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]; type 0x01 is an
  Ed25519 note signature, 0x04 an Ed25519 `cosignature/v1`;
- a vkey is `<name>+<hex key ID>+<base64(type || public key)>`;
- a cosignature/v1 signs "cosignature/v1\\ntime <decimal>\\n" + the checkpoint text, and its
  signature bytes are the 8-byte big-endian timestamp then the Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing

from tests.support.rfc9162 import Reference

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"
DECIMAL = re.compile(r"0|[1-9][0-9]*")
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_PROOF_LINES = 63
SIZE_TYPE = "text/x.tlog.size"


class NoteError(ValueError):
    """A note, checkpoint, vkey or witness request that breaks its specification."""


def b64(data: bytes) -> str:
    """Returns standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Returns the bytes of strict standard base64 text, or raises NoteError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NoteError(f"bad base64 {text!r}") from exc
    if b64(raw) != text:
        raise NoteError(f"non-canonical base64 {text!r}")
    return raw


def decimal(text: str) -> int:
    """Returns a size written in ASCII decimal without leading zeroes, or raises NoteError."""
    if not DECIMAL.fullmatch(text) or int(text) >= 2**63:
        raise NoteError(f"bad decimal {text!r}")
    return int(text)


def key_id(name: str, kind: int, public_key: bytes) -> bytes:
    """Returns the 4-byte key ID of a key (signed-note, "Signatures")."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([kind]) + public_key).digest()[:4]


def check_name(name: str) -> str:
    """Returns a key name if it is non-empty, without spaces or '+'; else raises."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteError(f"bad key name {name!r}")
    return name


@dataclass(frozen=True)
class Vkey:
    """A verifier key: a name, a signature type and an Ed25519 public key."""

    name: str
    kind: int
    public_key: bytes

    @property
    def id(self) -> bytes:
        """Returns the 4-byte key ID of this key."""
        return key_id(self.name, self.kind, self.public_key)

    def text(self) -> str:
        """Returns the vkey as signed-note writes it."""
        return f"{self.name}+{self.id.hex()}+{b64(bytes([self.kind]) + self.public_key)}"

    @classmethod
    def parse(cls, text: str) -> Vkey:
        """Reads `<name>+<hex key ID>+<base64(type || key)>`; checks the key ID."""
        name, plus, rest = text.partition("+")
        hex_id, plus2, material = rest.partition("+")
        if not (plus and plus2) or not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
            raise NoteError(f"bad vkey {text!r}")
        raw = unb64(material)
        if len(raw) != 33:
            raise NoteError("an Ed25519 vkey holds a type byte and 32 bytes")
        vkey = cls(check_name(name), raw[0], raw[1:])
        if vkey.id.hex() != hex_id.lower():
            raise NoteError("the vkey's key ID does not match its name and key")
        return vkey


@dataclass
class Signer:
    """An Ed25519 key with a name: signs notes (type 0x01) or cosigns checkpoints (0x04)."""

    name: str
    key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)

    def vkey(self, kind: int = ED25519) -> Vkey:
        """Returns this key's vkey as a note signer (0x01) or a cosigner (0x04)."""
        return Vkey(check_name(self.name), kind, bytes(self.key.verify_key))

    def sign_line(self, text: str) -> str:
        """Returns the note signature line of an Ed25519 signature over `text`."""
        signature = self.key.sign(text.encode()).signature
        return f"{DASH} {self.name} {b64(self.vkey().id + signature)}\n"

    def cosign_line(self, text: str, timestamp: int) -> str:
        """Returns the cosignature/v1 line over checkpoint `text` at `timestamp`."""
        signature = self.key.sign(cosigned_message(text, timestamp)).signature
        stamp = timestamp.to_bytes(8, "big")
        return f"{DASH} {self.name} {b64(self.vkey(COSIGNATURE_V1).id + stamp + signature)}\n"


def cosigned_message(text: str, timestamp: int) -> bytes:
    """Returns the bytes a cosignature/v1 signs (tlog-cosignature, "Ed25519 signed message")."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass
class Note:
    """A parsed signed note: its text and its (key name, signature bytes) lines."""

    text: str
    signatures: list[tuple[str, bytes]]

    @classmethod
    def parse(cls, note: str) -> Note:
        """Splits a note at its last blank line; checks the form of every signature line."""
        if any(ord(c) < 0x20 and c != "\n" for c in note):
            raise NoteError("a note holds no control characters but newline")
        cut = note.rfind("\n\n")
        if cut < 0 or not note.endswith("\n"):
            raise NoteError("no blank line before the signatures, or no final newline")
        text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
        signatures = []
        for line in lines:
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != DASH:
                raise NoteError(f"bad signature line {line!r}")
            raw = unb64(parts[2])
            if len(raw) < 5:
                raise NoteError("a signature holds a key ID and signature bytes")
            signatures.append((check_name(parts[1]), raw))
        return cls(text, signatures)

    def verified_by(self, vkey: Vkey) -> list[int | None]:
        """Verifies every line of `vkey`: a timestamp (0x04), None (0x01); raises on a bad one."""
        found = []
        for name, raw in self.signatures:
            if name != vkey.name or raw[:4] != vkey.id:
                continue  # someone else's key: ignored, as signed-note says
            if vkey.kind == COSIGNATURE_V1:
                if len(raw) != 4 + 8 + 64:
                    raise NoteError(f"a cosignature by {name} has {len(raw)} bytes")
                stamp = int.from_bytes(raw[4:12], "big")
                message, signature = cosigned_message(self.text, stamp), raw[12:]
            else:
                stamp, message, signature = None, self.text.encode(), raw[4:]
            try:
                nacl.signing.VerifyKey(vkey.public_key).verify(message, signature)
            except (nacl.exceptions.BadSignatureError, ValueError) as exc:
                raise NoteError(f"the signature by known key {name} fails") from exc
            found.append(stamp)
        return found


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint text: origin, size, root hash and any extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), b64(self.root), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Reads a checkpoint text: at least three non-empty lines, each ending in a newline."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or "" in lines[:-1]:
            raise NoteError("a checkpoint is three or more non-empty lines")
        root = unb64(lines[2])
        if len(root) != 32:
            raise NoteError("the root hash is 32 bytes")
        return cls(lines[0], decimal(lines[1]), root, tuple(lines[3:-1]))


def open_checkpoint(note: str, log_keys: list[Vkey]) -> tuple[Checkpoint, Note]:
    """Returns a checkpoint signed by one of `log_keys` (a known key failing rejects it)."""
    parsed = Note.parse(note)
    checkpoint = Checkpoint.parse(parsed.text)
    if not any(parsed.verified_by(k) for k in log_keys if k.kind == ED25519):
        raise NoteError("no signature by a log key")
    return checkpoint, parsed


def cosignatures(note: str, witnesses: list[Vkey]) -> dict[str, int]:
    """Returns {witness name: timestamp} of the valid cosignatures in a note by known keys."""
    parsed = Note.parse(note)
    found = {}
    for vkey in witnesses:
        stamps = parsed.verified_by(vkey)
        if stamps:
            found[vkey.name] = max(stamps)
    return found


def add_checkpoint_body(old: int, proof: list[bytes], note: str) -> bytes:
    """Returns an add-checkpoint request body (tlog-witness, "add-checkpoint")."""
    lines = [f"old {old}", *(b64(h) for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode()


class WitnessRefused(Exception):
    """A witness answered add-checkpoint with something other than 200."""

    def __init__(self, status: int, body: str, content_type: str):
        super().__init__(f"the witness answered {status}: {body.strip()[:200]}")
        self.status, self.body, self.content_type = status, body, content_type


class Log:
    """A small C2SP log: leaves in memory, signed checkpoints, and cosignatures from witnesses.

    Remembers, per witness URL, the size that witness last cosigned, as a log must to send
    `old`; a 409 naming another size is retried once from that size.
    """

    def __init__(self, origin: str, signer: Signer | None = None):
        self.origin = origin
        self.signer = signer or Signer(origin)
        self.leaves: list[bytes] = []
        self.tree = Reference(self.leaves)
        self.known: dict[str, int] = {}

    def append(self, *leaves: bytes) -> None:
        """Appends leaf inputs (RFC 6962 hashes them with a 0x00 prefix)."""
        self.leaves.extend(leaves)

    def root(self, size: int | None = None) -> bytes:
        """Returns the RFC 6962 root of the first `size` leaves (all by default)."""
        size = len(self.leaves) if size is None else size
        return self.tree.mth(0, size) if size else EMPTY_ROOT

    def note(self, size: int | None = None) -> str:
        """Returns the signed checkpoint note of the first `size` leaves (all by default)."""
        size = len(self.leaves) if size is None else size
        text = Checkpoint(self.origin, size, self.root(size)).text()
        return f"{text}\n{self.signer.sign_line(text)}"

    def proof(self, old: int, new: int) -> list[bytes]:
        """Returns the RFC 6962 consistency proof from `old` to `new` (none from 0 or equal)."""
        return [] if old in (0, new) or old > new else self.tree.proof(old, new)

    def cosign(self, url: str, witness: Vkey, size: int | None = None) -> tuple[str, int]:
        """Asks the witness at `url` to cosign; returns (its verified line, its timestamp)."""
        size = len(self.leaves) if size is None else size
        note = self.note(size)
        old = self.known.get(url, 0)
        try:
            answer = self.submit(url, old, note, size)
        except WitnessRefused as refused:
            if refused.status != 409 or refused.content_type != SIZE_TYPE:
                raise
            old = decimal(refused.body.removesuffix("\n"))
            if old > size:
                raise
            answer = self.submit(url, old, note, size)
        stamps = cosignatures(note + answer, [witness])
        if witness.name not in stamps:
            raise NoteError(f"no valid cosignature by {witness.name} in {answer!r}")
        self.known[url] = size
        line = next(x for x in answer.splitlines(keepends=True) if x.split(" ")[1] == witness.name)
        return line, stamps[witness.name]

    def submit(self, url: str, old: int, note: str, size: int) -> str:
        """Posts one add-checkpoint request; returns the 200 body or raises WitnessRefused."""
        body = add_checkpoint_body(old, self.proof(old, size), note)
        return post(url.rstrip("/") + "/add-checkpoint", body)


def post(url: str, body: bytes, timeout: float = 10) -> str:
    """POSTs `body`; returns the 200 answer's text or raises WitnessRefused."""
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            text = error.read().decode(errors="replace")
            raise WitnessRefused(error.code, text, error.headers.get_content_type()) from None
