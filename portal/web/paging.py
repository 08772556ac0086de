"""Numbers from the query string, parsed and bounded in one place: every list's `limit` and
`cursor`, and the other integers the API and the pages take (docs/security.md).

A number is refused with 400 `invalid_parameter` unless it is plain digits inside the range
the column it is compared with can hold (`portal.db.column_max`: 2**31 - 1 for an `Integer`
column, which every id and `log_index` is), so no value reaches the database driver that would
overflow there. The OpenAPI document reads the same constants, so it cannot drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from portal.db import MAX_ROW_ID, column_max
from portal.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def number_pattern(maximum: int) -> str:
    """A regular expression matching exactly the plain decimal numbers from 0 to `maximum`
    (leading zeros allowed): what the OpenAPI document says a cursor may be."""
    top = str(maximum)
    branches = [f"[0-9]{{1,{len(top) - 1}}}"] if len(top) > 1 else []
    for i, digit in enumerate(top):
        if digit != "0":
            rest = len(top) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            branches.append(top[:i] + f"[0-{int(digit) - 1}]" + tail)
    branches.append(top)
    return "0*(?:" + "|".join(branches) + ")"


# Plain decimal digits only: no sign, no spaces, no exponent. The document's patterns: a row
# id's cursor is one number within MAX_ROW_ID, the question history's two.
DIGITS = re.compile(number_pattern(MAX_ROW_ID))
PAIR = re.compile(f"{DIGITS.pattern}-{DIGITS.pattern}")


def whole(raw: str) -> int | None:
    """The value of plain decimal digits (leading zeros allowed, as the patterns allow them),
    or None for anything else and for numbers past every column."""
    if not raw or not raw.isascii() or not raw.isdigit():
        return None
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= 20 else None


def bound(column=None, maximum: int | None = None) -> int:
    """The largest number accepted: `maximum`, else what `column` holds, else a row id's."""
    if maximum is not None:
        return maximum
    return column_max(column) if column is not None else MAX_ROW_ID


def integer(
    args: Mapping[str, str],
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int | None = None,
    column=None,
    required: bool = False,
    message: str | None = None,
) -> int | None:
    """Reads `name` as a whole number in [minimum, maximum] (by default what `column` holds);
    `default` when absent, unless it is `required`. Present but empty is refused, as the
    OpenAPI document's patterns say (no form of the pages sends an empty number)."""
    maximum = bound(column, maximum)
    raw = args.get(name)
    text = message or f"{name} must be a whole number from {minimum} to {maximum}"
    if raw is None:
        if required:
            raise ApiError(400, "invalid_parameter", text, {name: raw})
        return default
    value = whole(raw)
    if value is None or not minimum <= value <= maximum:
        raise ApiError(400, "invalid_parameter", text, {name: raw})
    return value


def row_cursor(raw: str, column=None) -> int:
    """A cursor that is one row id of `column`, as `next` gave it."""
    return integer(
        {"cursor": raw}, "cursor", column=column, message="cursor must be a value from `next`"
    )


def pair_cursor(raw: str, outer=None, inner=None) -> tuple[int, int]:
    """A cursor of two row ids, `<outer>-<inner>`, as `next` gave it."""
    first, _, second = raw.partition("-")
    pair = whole(first), whole(second)
    if None in pair or pair[0] > bound(outer) or pair[1] > bound(inner):
        raise ApiError(
            400, "invalid_parameter", "cursor must be a value from `next`", {"cursor": raw}
        )
    return pair


def page_args(
    args: Mapping[str, str],
    *,
    default: int = DEFAULT_LIMIT,
    maximum: int = MAX_LIMIT,
    column=None,
    cursor: Callable[[str], Any] | None = None,
) -> tuple[int, Any]:
    """Returns (limit, cursor or None) of a list request; the cursor is a row id of `column`
    unless `cursor` parses it."""
    message = f"limit must be 1 to {maximum}"
    limit = integer(args, "limit", default=default, minimum=1, maximum=maximum, message=message)
    raw = args.get("cursor")
    if raw is None:
        return limit, None
    return limit, (cursor(raw) if cursor is not None else row_cursor(raw, column))
