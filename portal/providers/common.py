"""What every provider kind shares: the result and error types and small parsing helpers.

`portal.providers.http`, the wire formats (`openai`, `ollama`, `anthropic`) and
`portal.providers.local` build on this module; it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

DETAIL_CHARS = 300


@dataclass(frozen=True)
class ProviderResult:
    text: str
    provider: str
    provider_model: str
    started_at: datetime
    finished_at: datetime
    latency_ms: int
    prompt_tokens: int | None
    completion_tokens: int | None
    served_by: dict = field(default_factory=dict)  # portal/providers/served_by.py


@dataclass(frozen=True)
class Reply:
    """What a wire format read from a provider's answer: its text (None, with the problem,
    when it had none) and the token counts it reported."""

    text: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    problem: str | None = None


class ProviderError(Exception):
    """A provider call failed; `message` names the region and the cause."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The call's own time budget ran out."""


def dig(data, *path):
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or len(data) <= step:
                return None
        elif not isinstance(data, dict):
            return None
        data = data[step] if isinstance(step, int) else data.get(step)
    return data


def count(value) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def clip(text: str) -> str:
    """Returns `text` on one printable line of at most ~300 characters."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 1] + "…"
