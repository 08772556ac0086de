"""What a provider said about itself with an answer: the evidence of where it came from.

Everything here is
untrusted provider input: values are clipped to short printable text, and empty ones left out.
"""

from __future__ import annotations

from collections.abc import Mapping

# Response headers worth keeping: request ids a provider can look up, and who served it.
HEADERS = (
    "server",
    "via",
    "x-request-id",
    "request-id",
    "x-amzn-requestid",
    "cf-ray",
    "fly-request-id",
    "x-served-by",
)
MAX_CHARS = 200


def clip(value: object) -> str | None:
    """Returns `value` as one printable line of at most MAX_CHARS, or None when empty."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())
    return flat[:MAX_CHARS] or None


def describe(data: object, headers: Mapping[str, str] | None, peer: str | None) -> dict:
    """Returns {model, system_fingerprint, provider, headers, peer_ip}, empty fields omitted."""
    data = data if isinstance(data, dict) else {}
    routed = data.get("provider")
    if isinstance(routed, dict):  # some routers nest it: {"provider": {"name": ...}}
        routed = routed.get("name")
    found = {
        "model": clip(data.get("model")),
        "system_fingerprint": clip(data.get("system_fingerprint")),
        "provider": clip(routed),
        "peer_ip": clip(peer),
    }
    kept = {}
    for name in HEADERS:
        value = clip((headers or {}).get(name))
        if value:
            kept[name] = value
    if kept:
        found["headers"] = kept
    return {k: v for k, v in found.items() if v}
