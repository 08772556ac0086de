"""Which public keys may submit JobSpecs, read from BEACON_TRUSTED_KEYS."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from portal.times import iso

KEY_BYTES = 32
STATUSES = ("active", "revoked")
PORTAL_KID = "portal"


@dataclass(frozen=True)
class TrustedKey:
    """One key allowed to submit, with its status and validity window."""

    kid: str
    public_key: str
    status: str
    not_before: datetime | None = None
    not_after: datetime | None = None


class TrustError(Exception):
    """A correctly signed JobSpec whose key may not submit."""

    kind = "forbidden"

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _check_key(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: public_key is missing")
    text = text.strip()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: public_key {text!r} is not standard base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"{where}: public_key decodes to {len(raw)} bytes; an Ed25519 key is {KEY_BYTES}"
        )
    return text


def _parse_time(value: object, field: str, where: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: {field} must be an ISO-8601 time string")
    try:
        # fromisoformat in 3.11 reads a trailing Z and offsets.
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {field} {value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        # A time with no offset is read as UTC, the only zone the portal stores.
        moment = moment.replace(tzinfo=UTC)
    return moment


def _parse_entry(entry: object, index: int) -> TrustedKey:
    where = f"BEACON_TRUSTED_KEYS entry {index}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with kid, public_key and status")
    public_key = _check_key(entry.get("public_key"), where)
    kid = entry.get("kid") or public_key[:8]
    if not isinstance(kid, str):
        raise ValueError(f"{where}: kid must be a string")
    where = f"BEACON_TRUSTED_KEYS entry {index} ({kid})"
    status = entry.get("status", "active")
    if status not in STATUSES:
        raise ValueError(f"{where}: unknown status {status!r}; expected one of {STATUSES}")
    not_before = _parse_time(entry.get("not_before"), "not_before", where)
    not_after = _parse_time(entry.get("not_after"), "not_after", where)
    if not_before and not_after and not_after < not_before:
        raise ValueError(f"{where}: not_after is before not_before")
    return TrustedKey(kid, public_key, status, not_before, not_after)


def parse_trusted_keys(raw: str | None) -> list[TrustedKey]:
    """Parse BEACON_TRUSTED_KEYS: a JSON array of entries or comma-separated base64 keys."""
    if raw is None or not raw.strip():
        return []
    text = raw.strip()
    if text.startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"BEACON_TRUSTED_KEYS is not valid JSON: {exc}") from None
        keys = [_parse_entry(entry, index) for index, entry in enumerate(entries)]
    else:
        keys = []
        for index, item in enumerate(text.split(",")):
            if not item.strip():
                continue
            public_key = _check_key(item, f"BEACON_TRUSTED_KEYS entry {index}")
            keys.append(TrustedKey(public_key[:8], public_key, "active"))
    kids = [key.kid for key in keys]
    duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
    if duplicates:
        raise ValueError(f"BEACON_TRUSTED_KEYS repeats kid {', '.join(duplicates)}")
    return keys


def check_trust(
    public_key: str, keys: list[TrustedKey], portal_key: str | None, now: datetime
) -> TrustedKey:
    """Return the trusted entry for public_key, or raise TrustError."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if portal_key and public_key == portal_key:
        return TrustedKey(PORTAL_KID, portal_key, "active")
    listed = [key for key in keys if key.public_key == public_key]
    if not listed:
        raise TrustError(
            "untrusted_key",
            f"public key {public_key} is not trusted by this portal; to trust it, add "
            f'{{"kid": "<name>", "public_key": "{public_key}", "status": "active"}} to '
            "BEACON_TRUSTED_KEYS where the portal runs and restart it "
            "(`flask --app wsgi beacon keygen` prints such a line for a new key)",
        )
    # A key listed twice (for rotation windows) is trusted if any active entry covers now.
    for key in listed:
        if key.status != "active":
            continue
        if key.not_before and now < key.not_before:
            continue
        if key.not_after and now > key.not_after:
            continue
        return key
    if all(key.status == "revoked" for key in listed):
        raise TrustError("revoked_key", f"key {listed[0].kid} has been revoked")
    key = next(key for key in listed if key.status == "active")
    if key.not_before and now < key.not_before:
        raise TrustError("expired_key", f"key {key.kid} is not valid before {_iso(key.not_before)}")
    raise TrustError("expired_key", f"key {key.kid} expired at {_iso(key.not_after)}")


def describe(keys: list[TrustedKey], portal_key: str | None) -> str:
    """Names every key that may submit, for logs: `portal (AbCd1234…), me (XyZw5678…)`."""
    parts = [f"{PORTAL_KID} ({portal_key[:8]}…)"] if portal_key else []
    for key in keys:
        note = "" if key.status == "active" else f", {key.status}"
        parts.append(f"{key.kid} ({key.public_key[:8]}…{note})")
    return ", ".join(parts)


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return iso(moment, "auto")
