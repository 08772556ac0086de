"""The API's listing limits: the validators in `portal.api` and the OpenAPI document both use
these, so the document cannot drift from what the API accepts."""

from __future__ import annotations

import re

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# A cursor is a row id as `next` gave it; 18 digits keep it inside a signed 64-bit integer.
DIGITS = re.compile(r"[0-9]{1,18}")


def page_args(args) -> tuple[int, int | None]:
    """Returns a listing's `limit` and `cursor` (a row id) from `args`, refusing bad ones."""
    from portal.errors import Invalid

    raw_limit = args.get("limit", str(DEFAULT_LIMIT))
    raw_cursor = args.get("cursor")
    if not DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise Invalid("invalid_parameter", f"limit must be 1 to {MAX_LIMIT}", {"limit": raw_limit})
    if raw_cursor is not None and not DIGITS.fullmatch(raw_cursor):
        raise Invalid(
            "invalid_parameter", "cursor must be a value from `next`", {"cursor": raw_cursor}
        )
    return int(raw_limit), int(raw_cursor) if raw_cursor is not None else None
