"""Time as the portal keeps and shows it: timezone-aware UTC, ISO-8601 with `Z` on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Returns the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(value: datetime | None, timespec: str = "milliseconds") -> str | None:
    """Formats a time as UTC ISO-8601 with `Z`, as on the wire (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
