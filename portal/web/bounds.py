"""Query-string and path numbers, bounded before they reach the database (docs/security.md)."""

from __future__ import annotations

import re

from flask import request

from portal.errors import ApiError

# The largest row id a 64-bit integer column holds; beyond it the database driver overflows.
MAX_ROW_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def row_id_arg(name: str) -> int | None:
    """Reads a row id from the query string; 400 unless it is digits a row id can hold."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw) or int(raw) > MAX_ROW_ID:
        raise ApiError(400, "invalid_parameter", f"{name} must be a value from a link", {name: raw})
    return int(raw)
