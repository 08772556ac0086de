"""The one rule for what a URL brings: text no database can store, and numbers past their
column, are refused before any query (issue 20; docs/security.md "Text from a URL").

- **Text.** A path segment or a query name or value that is not storable text
  (`portal.storable.storable_text` would change it: NUL, lone surrogates; the rule the intake
  applies to prompts and model output) cannot name a stored row or match a stored value.
  PostgreSQL refused it with 500 where SQLite answered 200, so it is refused on both, before
  any view runs: 404 in the path (no row has that id), 400 `invalid_parameter` in the query,
  naming the parameter without echoing its value.
- **Path numbers.** Every `<int:...>` in a route is a row id or an index held in an `Integer`
  column (`portal.db.MAX_INT32` on PostgreSQL): a larger one names no row, and is refused here
  with 404 before any query, with the code the API gives for that argument's rows
  (`execution_not_found`), else `not_found`. Query numbers are bounded by their column in
  `portal.web.paging`.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import NotFound

from portal import errors
from portal.db import MAX_INT32
from portal.errors import ApiError
from portal.storable import storable_text

# The refusal of a path number no row can have, by argument: the code the lookup gives.
PAST_COLUMN = {"execution_id": ("execution_not_found", "no execution with id {}")}


def register(app: Flask) -> None:
    """Installs the check before every other hook: nothing may query with what no column holds."""
    app.before_request_funcs.setdefault(None, []).insert(0, check_url_text)


def storable(value: str) -> bool:
    """True when `value` is stored and compared as given on every database."""
    return storable_text(value) == value


def check_url_text() -> None:
    """Refuses a path segment (404) or a query name or value (400) that cannot be stored, and
    a path number past its column (404)."""
    if not storable(request.path):
        raise NotFound("no page has that address")
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and not 0 <= value <= MAX_INT32:
            code, message = PAST_COLUMN.get(name, ("not_found", "no row has the number {}"))
            raise errors.NotFound(code, message.format(value))
    for name, value in request.args.items(multi=True):
        if not storable(name):
            raise ApiError(
                400,
                "invalid_parameter",
                "a query parameter's name holds a character no database stores (such as NUL)",
            )
        if not storable(value):
            raise ApiError(
                400,
                "invalid_parameter",
                f"query parameter {name!r} holds a character no database stores (such as NUL)",
                {name: "not storable text"},
            )
