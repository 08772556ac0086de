"""Text as both databases can store it: untrusted strings (model output, a JobSpec's literal
prompts) pass through here before they are written."""

from __future__ import annotations


def storable_text(text: str) -> str:
    """Returns `text` with NUL characters and unpaired surrogates replaced by U+FFFD."""
    # PostgreSQL text cannot hold NUL (SQLite can: the same job must be storable on both), and a
    # JSON string may carry unpaired surrogates, which UTF-8 cannot encode.
    text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", errors="replace").decode("utf-8")
