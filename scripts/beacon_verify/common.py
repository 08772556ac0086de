"""What every check shares: the PASS/FAIL printer, hashing, base64, Ed25519 and HTTP reads."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request

import nacl.exceptions
import nacl.signing

# What a read of the portal can raise: no answer, an HTTP error, or a body that is not the JSON
# expected.
FETCH_ERRORS = (urllib.error.URLError, OSError, ValueError, KeyError, TypeError, AttributeError)
TIMEOUT_S = 30


class Checks:
    """Prints one line per check and remembers whether any failed."""

    def __init__(self) -> None:
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str) -> bool:
        """Prints `PASS name: detail` or `FAIL name: detail`; returns `ok`."""
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        self.failed += not ok
        return ok


def sha256(data: bytes) -> bytes:
    """Returns the SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()


def b64decode(text: object) -> bytes:
    """Returns the bytes of standard base64 text; raises ValueError on anything else."""
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(text, validate=True)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Says whether `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def fetch(base: str, path: str, **params) -> object:
    """Returns the JSON the portal at `base` answers for GET `path` with query `params`."""
    query = {k: v for k, v in params.items() if v is not None}
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return json.loads(response.read())
