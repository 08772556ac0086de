"""A short call to one (region, model) to see that its URL, key and model name work (SPEC 13).

`check_pair` sends one short prompt and returns a `Check`: whether it answered, how fast, the
model name the provider answered as, and for a failure what to do, in words that name the
setting to change ("401: the key in US_EAST_API_KEY was refused"). `flask beacon regions check`
prints these. Nothing here prints or returns a key: the values of a region's secret variables
are hidden in any text the provider sent back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from portal import redact
from portal.providers.common import ProviderError, clip
from portal.providers.http import call

PROMPT = "Reply with one word: ready"
MAX_TOKENS = 16


@dataclass(frozen=True)
class Check:
    region: str
    model: str
    ok: bool
    status: str  # "ok", "HTTP 401", "timeout", "unreachable", "error"
    latency_ms: int | None = None
    answered_as: str | None = None
    hint: str | None = None


def check_pair(region, model, timeout_s: float) -> Check:
    """Asks `model` in `region` one short prompt and says how it went."""
    try:
        result = call(region, model, PROMPT, timeout_s=timeout_s, max_tokens=MAX_TOKENS)
    except ProviderError as exc:
        # Hidden before anything is cut short: half a key would no longer match the whole one.
        exc.message = hide_secrets(exc.message, region)
        status, hint = explain(region, model, exc, timeout_s)
        return Check(region.id, model.id, False, status, hint=hide_secrets(hint, region))
    answered_as = result.served_by.get("model") or result.provider_model
    return Check(region.id, model.id, True, "ok", result.latency_ms, answered_as)


def explain(region, model, exc: ProviderError, timeout_s: float) -> tuple[str, str]:
    """Returns the status word and what to do about a failed check."""
    env = region.api_key_env
    if exc.status in (401, 403):
        if not env:
            return f"HTTP {exc.status}", (
                f"{exc.status}: the host wants a key and this region sends none: set api_key_env"
                " to the name of the variable that holds it"
            )
        if not os.environ.get(env):
            return f"HTTP {exc.status}", f"{exc.status}: {env} is not set: export the key in it"
        return f"HTTP {exc.status}", (
            f"{exc.status}: the key in {env} was refused: check that it is current and is for"
            f" this host ({redact.safe_url(region.base_url)})"
        )
    if exc.status == 404:
        return "HTTP 404", (
            f"404: no such model or path: check provider_model ({model.provider_model!r}) and"
            f" base_url ({_where(region)})"
        )
    if exc.status == 429:
        return "HTTP 429", "429: rate limited: wait, or lower the region's rate_limit"
    if exc.status is not None and exc.status >= 500:
        return f"HTTP {exc.status}", f"{exc.status}: the provider failed; try again later"
    if exc.status is not None:
        return f"HTTP {exc.status}", clip(exc.message)
    # The messages below are the ones portal.providers.http composes.
    if "no complete answer" in exc.message:
        return "timeout", (
            f"no answer within {timeout_s:g} s: is the server up? a cold start may need a"
            " longer --timeout"
        )
    if "connection refused" in exc.message or "host name not found" in exc.message:
        return "unreachable", f"nothing answers at base_url ({_where(region)}): check host and port"
    if "TLS error" in exc.message:
        return "unreachable", "TLS failed: check http:// against https:// in base_url"
    return "error", clip(exc.message)


def _where(region) -> str:
    return redact.safe_url(region.base_url) or "not set"


def hide_secrets(text: str, region) -> str:
    """Returns `text` without the values of the region's secret variables or URL secrets."""
    text = redact.scrub(text, region.base_url) or ""
    for name in region.secret_env_names:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, redact.HIDDEN)
    return text
