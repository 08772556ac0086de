"""Ed25519 signatures over JobSpecs: the portal's own scheme and the original runner's forms."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
import rfc8785

SCHEMES = ("beacon-jcs-v1", "legacy-c2", "legacy-c1", "legacy-c0")
CURRENT_SCHEME = SCHEMES[0]

SIGNATURE_BYTES = 64
KEY_BYTES = 32
SEED_BYTES = 32

# Beyond this an integer is no longer exact as an IEEE double, which is all JSON numbers are to
# the browser signers and to RFC 8785.
_SAFE_INT = 2**53 - 1
_MAX_DOUBLE = int(2**1023 * (2 - 2**-52))

# Go's encoding/json escapes these for safe embedding in HTML and JavaScript.
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_C2_REMOVED = ("id", "created_at", "signature", "public_key")


class SignatureError(Exception):
    """A JobSpec's signature is absent, malformed, or does not verify."""

    # The refusal's kind (portal.errors): a malformed signature is invalid input, a missing or
    # wrong one leaves the submitter unauthenticated.
    KINDS = {
        "missing_signature": "unauthenticated",
        "malformed_signature": "invalid",
        "invalid_signature": "unauthenticated",
    }

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = self.KINDS[code]


@dataclass(frozen=True)
class Verified:
    """The outcome of a successful verification."""

    scheme: str
    public_key: str
    signed_bytes: bytes
    # The spec as signed, when the received one carries fields its scheme leaves unsigned that
    # must not count (see `_covered`); None when the received spec is the signed one.
    covered: dict | None = None

    @property
    def spec_hash(self) -> str:
        """Return the lowercase hex SHA-256 of the signed bytes."""
        return hashlib.sha256(self.signed_bytes).hexdigest()


# --- parsing ---------------------------------------------------------------------------------


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    if abs(value) > _MAX_DOUBLE:
        raise ValueError(f"number {text[:20]}... is out of range")
    return value


def _unique_object(pairs: list[tuple[str, object]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r} in a JSON object")
        obj[key] = value
    return obj


def _check_strings(value: object) -> None:
    # A lone surrogate escape (\ud800) parses in Python but has no UTF-8 form, so no scheme
    # could sign it.
    if isinstance(value, str):
        if _SURROGATE_RE.search(value):
            raise ValueError("string contains an unpaired surrogate escape")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def load_json(raw: bytes | str) -> object:
    """Parse a request body strictly: UTF-8, no duplicate keys, no NaN or Infinity."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"body is not valid UTF-8: {exc.reason}") from None
    try:
        value = json.loads(
            raw,
            object_pairs_hook=_unique_object,
            parse_float=_finite_float,
            parse_int=_finite_int,
            parse_constant=_reject_constant,
        )
        _check_strings(value)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None
    return value


# --- signed bytes ----------------------------------------------------------------------------


def _as_double(value: object) -> object:
    """Return value with integers outside the exact double range turned into floats."""
    # A browser parses such an integer into the nearest double before canonicalizing.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > _SAFE_INT:
        if abs(value) > _MAX_DOUBLE:
            raise ValueError(f"integer {value} is beyond the range of a JSON number")
        return float(value)
    if isinstance(value, dict):
        return {key: _as_double(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_double(item) for item in value]
    return value


def _go_float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    if value == 0:
        # Go keeps the sign of zero where ECMAScript drops it.
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    # Go formats float64 exactly as ECMAScript does otherwise: shortest digits, plain notation
    # in [1e-6, 1e21), exponent without leading zeros outside it.
    return rfc8785.dumps(value).decode("ascii")


def _go_string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], quoted)


def _go_json(value: object) -> str:
    """Encode like Go's json.Marshal of a map: sorted keys, no whitespace, HTML escaping."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_go_json(item) for item in value) + "]"
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("object keys must be strings")
        # Sorting str by code point equals Go's sort by UTF-8 bytes.
        items = sorted(value.items())
        return "{" + ",".join(_go_string(k) + ":" + _go_json(v) for k, v in items) + "}"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _prune(value: object) -> object:
    """Drop keys whose value is null, "" or an object left empty, at every level."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item = _prune(item)
            if item is None or item == "" or item == {}:
                continue
            kept[key] = item
        return kept
    if isinstance(value, list):
        return [_prune(item) for item in value]
    return value


def _legacy_c2(spec: dict) -> dict:
    body = _prune({k: v for k, v in spec.items() if k not in _C2_REMOVED})
    constraints = body.get("constraints")
    if isinstance(constraints, dict):
        rate = constraints.get("min_success_rate")
        if isinstance(rate, int | float) and not isinstance(rate, bool) and rate == 0:
            body["constraints"] = {k: v for k, v in constraints.items() if k != "min_success_rate"}
    return body


def signed_bytes(spec: dict, scheme: str) -> bytes:
    """Return the exact bytes that scheme signs for spec."""
    if scheme == "beacon-jcs-v1":
        body = {k: v for k, v in spec.items() if k not in ("signature", "public_key")}
        return rfc8785.dumps(_as_double(body))
    if scheme == "legacy-c2":
        return _go_json(_legacy_c2(spec)).encode("utf-8")
    if scheme in ("legacy-c1", "legacy-c0"):
        body = dict(spec, signature="", public_key="")
        if scheme == "legacy-c1":
            body.pop("id", None)
        return _go_json(body).encode("utf-8")
    raise ValueError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")


# --- verification ----------------------------------------------------------------------------


def _decode_field(spec: dict, field: str, size: int) -> bytes:
    text = spec[field]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed_signature", f"{field} is not standard base64") from None
    if len(raw) != size:
        raise SignatureError(
            "malformed_signature", f"{field} decodes to {len(raw)} bytes; expected {size}"
        )
    return raw


def _verifies(key: nacl.signing.VerifyKey, spec: dict, scheme: str, signature: bytes):
    try:
        message = signed_bytes(spec, scheme)
    except (ValueError, TypeError, RecursionError):
        # This spec has no byte form under this scheme, so the scheme cannot have signed it.
        return None
    try:
        key.verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return None
    return message


def check_form(spec: dict) -> tuple[bytes, bytes]:
    """Checks that spec carries a well-formed signature and key; returns (signature, key)."""
    if not isinstance(spec, dict):
        raise SignatureError("missing_signature", "a JobSpec must be a JSON object")
    # Check both fields for presence before either for form, so the 401 wins over the 400.
    for field in ("signature", "public_key"):
        if not isinstance(spec.get(field), str) or not spec.get(field):
            raise SignatureError("missing_signature", f"the JobSpec has no {field}")
    return (
        _decode_field(spec, "signature", SIGNATURE_BYTES),
        _decode_field(spec, "public_key", KEY_BYTES),
    )


def _covered(spec: dict, scheme: str, message: bytes) -> dict | None:
    """Returns the signed object alone when legacy-c2 bytes are also a beacon-jcs-v1 form.

    Such bytes may have been signed by a beacon-jcs-v1 signer; whatever legacy-c2 leaves
    unsigned (`id`, `created_at`, empty values, a zero `min_success_rate`) may then have been
    added by anyone, so it is dropped rather than believed (docs/signing.md).
    """
    if scheme != "legacy-c2":
        return None
    body = _legacy_c2(spec)
    try:
        as_jcs = rfc8785.dumps(_as_double(body))
    except (ValueError, TypeError, RecursionError):
        return None
    if as_jcs != message:
        return None
    return dict(body, signature=spec["signature"], public_key=spec["public_key"])


def verify(spec: dict, *, allow_legacy: bool = True) -> Verified:
    """Verify spec's signature under the first allowed scheme that matches."""
    signature, key_bytes = check_form(spec)
    key = nacl.signing.VerifyKey(key_bytes)
    allowed = SCHEMES if allow_legacy else SCHEMES[:1]
    for scheme in allowed:
        message = _verifies(key, spec, scheme, signature)
        if message is not None:
            return Verified(
                scheme=scheme,
                public_key=spec["public_key"],
                signed_bytes=message,
                covered=_covered(spec, scheme, message),
            )
    if not allow_legacy:
        for scheme in SCHEMES[1:]:
            if _verifies(key, spec, scheme, signature) is not None:
                raise SignatureError(
                    "invalid_signature",
                    f"the signature uses the original runner's form {scheme}, which this portal "
                    f"does not accept; sign the JobSpec with {CURRENT_SCHEME}",
                )
    raise SignatureError(
        "invalid_signature",
        f"the signature does not verify under {', '.join(allowed)} with the given public_key",
    )


# --- signing and keys ------------------------------------------------------------------------


def _signing_key(seed: bytes) -> nacl.signing.SigningKey:
    if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
        raise ValueError(f"a signing seed is {SEED_BYTES} bytes")
    return nacl.signing.SigningKey(seed)


def sign(spec: dict, seed: bytes) -> dict:
    """Return a copy of spec signed with seed under beacon-jcs-v1."""
    key = _signing_key(seed)
    signed = {k: v for k, v in spec.items() if k not in ("signature", "public_key")}
    signature = key.sign(signed_bytes(signed, CURRENT_SCHEME)).signature
    signed["public_key"] = base64.b64encode(bytes(key.verify_key)).decode("ascii")
    signed["signature"] = base64.b64encode(signature).decode("ascii")
    return signed


def generate_seed() -> bytes:
    """Return a fresh random Ed25519 seed."""
    return secrets.token_bytes(SEED_BYTES)


def public_key_b64(seed: bytes) -> str:
    """Return the standard base64 public key for seed."""
    return base64.b64encode(bytes(_signing_key(seed).verify_key)).decode("ascii")


def decode_seed(text: str) -> bytes:
    """Decode a base64 signing seed of 32 bytes."""
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signing key is not standard base64") from None
    if len(seed) != SEED_BYTES:
        raise ValueError(
            f"the signing key decodes to {len(seed)} bytes; an Ed25519 seed is {SEED_BYTES}"
        )
    return seed
