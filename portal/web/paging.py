"""Numbers from the query string, parsed and bounded in one place: every list's `limit` and
`cursor`, and the other integers the API and the pages take (docs/security.md).

A number is refused with 400 `invalid_parameter` unless it is plain digits inside the range
its column can hold (`portal.db`'s bounds), so no value reaches the database driver that would
overflow there. The OpenAPI document reads the same constants, so it cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from portal.db import MAX_ROW_ID
from portal.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Plain decimal digits only: no sign, no spaces, no exponent; 19 digits hold any 64-bit value.
DIGITS = re.compile(r"[0-9]{1,19}")
PAIR = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")


def integer(
    args: Mapping[str, str],
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = MAX_ROW_ID,
    required: bool = False,
    message: str | None = None,
) -> int | None:
    """Reads `name` as a whole number in [minimum, maximum]; `default` when absent or empty,
    unless it is `required`."""
    raw = args.get(name)
    text = message or f"{name} must be a whole number from {minimum} to {maximum}"
    if raw is None or raw == "":
        if required:
            raise ApiError(400, "invalid_parameter", text, {name: raw})
        return default
    if not DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ApiError(400, "invalid_parameter", text, {name: raw})
    return int(raw)


def row_cursor(raw: str) -> int:
    """A cursor that is one row id, as `next` gave it."""
    return integer({"cursor": raw}, "cursor", message="cursor must be a value from `next`")


def pair_cursor(raw: str) -> tuple[int, int]:
    """A cursor of two row ids, `<outer>-<inner>`, as `next` gave it."""
    match = PAIR.fullmatch(raw)
    if match is None or max(int(match[1]), int(match[2])) > MAX_ROW_ID:
        raise ApiError(
            400, "invalid_parameter", "cursor must be a value from `next`", {"cursor": raw}
        )
    return int(match[1]), int(match[2])


def page_args(
    args: Mapping[str, str],
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
    cursor: Callable[[str], Any] = row_cursor,
) -> tuple[int, Any]:
    """Returns (limit, cursor or None) of a list request."""
    message = f"limit must be 1 to {maximum}"
    limit = integer(args, "limit", default=default, minimum=1, maximum=maximum, message=message)
    raw = args.get("cursor")
    return limit, (cursor(raw) if raw is not None else None)
