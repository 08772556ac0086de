"""Issue 20, item 3: text from a URL that no database can store, and integers beyond the
columns' types, are refused before any query, never answered with 500.

PostgreSQL text cannot hold NUL, and its `integer` columns (every id, `log_index`) hold 32 bits:
`/jobs/a%00b`, `?region=us-east%00` or `/api/v1/log/entries?start=2147483648` failed there with
500 while SQLite answered. The rule the tests hold the app to, on whichever database the run
uses (TEST_DATABASE_URL): a NUL in any path segment or query value is 400 or 404, and no
integer, however large, answers 500. The walk covers every GET route of `app.url_map`, so a
route added later is covered too.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import Integer

# The one place this file names the portal's modules.
from portal.db import MAX_ROW_ID, column_max, db
from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider
from tests.support.specs import job_spec
from tests.support.workers import REGIONS, submit, write_config

JOB_ID = "walk-job"
MODEL = "llama3.2-1b"
QUESTION = "identity_basic"
NUL_VALUES = ["us-east\x00", "\x00"]
# Past a 32-bit column, the largest 64-bit row id the bounds let through today, past 64 bits.
BIG_VALUES = ["2147483648", "9223372036854775807", "9223372036854775808"]
# Every query parameter a route of the portal reads (SPEC sections 6, 7, 9, 11 and 12).
QUERY_NAMES = [
    "status",
    "limit",
    "cursor",
    "job_id",
    "model_id",
    "region",
    "baseline",
    "before",
    "differs",
    "model",
    "index",
    "size",
    "old",
    "new",
    "start",
    "language",
    "kind",
    "question_id",
    "cosigned",
    "next",
]


@pytest.fixture
def walked_app(make_app, signer, tmp_path):
    """An app whose database holds one ended job, its executions, answers and receipts."""
    with LoopbackProvider(label="walk") as provider:
        urls = dict.fromkeys(REGIONS, provider.base_url_openai)
        config = write_config(tmp_path / "walk.toml", urls)
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        client = app.test_client()
        submit(client, signer, job_spec([MODEL], list(REGIONS), [QUESTION], job_id=JOB_ID))
        run_inline(app)
    job = client.get(f"/api/v1/jobs/{JOB_ID}").json["job"]
    assert job["status"] == "completed", job
    return app, job["executions"][0]["id"]


def valid_args(execution_id: int) -> dict[str, str]:
    """A value for each path argument that names a row that exists."""
    return {
        "job_id": JOB_ID,
        "execution_id": str(execution_id),
        "model_id": MODEL,
        "index": "0",
        "question_id": QUESTION,
        "filename": "beacon.css",
    }


def build(rule, args: dict[str, str]) -> str:
    """The path of `rule` with `args` put in, each percent-encoded as a client would."""
    path = rule.rule
    for name in rule.arguments:
        converter = rule._converters[name]
        placeholder = f"<{name}>"
        for prefix in ("int:", "path:"):
            if f"<{prefix}{name}>" in path:
                placeholder = f"<{prefix}{name}>"
        safe = "/" if type(converter).__name__ == "PathConverter" else ""
        path = path.replace(placeholder, quote(args[name], safe=safe))
    return path


def get_routes(app):
    return sorted((r for r in app.url_map.iter_rules() if "GET" in r.methods), key=lambda r: r.rule)


def requests_for(app, execution_id: int):
    """Yields (kind, path, query) for every variant the walk asks."""
    good = valid_args(execution_id)
    for rule in get_routes(app):
        base = build(rule, good)
        for name in rule.arguments:
            is_int = type(rule._converters[name]).__name__ == "IntegerConverter"
            if not is_int:
                yield "nul", build(rule, {**good, name: "a\x00b"}), {}
            for big in BIG_VALUES:
                yield "big", build(rule, {**good, name: big}), {}
        for name in QUERY_NAMES:
            for value in NUL_VALUES:
                yield "nul", base, {name: value}
            for value in BIG_VALUES:
                yield "big", base, {name: value}


def test_every_get_route_refuses_nul_and_survives_big_integers(walked_app):
    app, execution_id = walked_app
    client = app.test_client()
    errors, unrefused, asked = [], [], 0
    for kind, path, query in requests_for(app, execution_id):
        asked += 1
        response = client.get(path, query_string=query)
        status = response.status_code
        response.close()
        if status >= 500 and status != 503:  # 503: /ready may say the schema is not Alembic's
            errors.append(f"{status} {path!r} {query!r}")
        elif kind == "nul" and status not in (400, 404):
            unrefused.append(f"{status} {path!r} {query!r}")
    assert asked > 1000
    shown = "\n".join(errors[:40] + unrefused[:20])
    assert not errors and not unrefused, (
        f"of {asked} requests, {len(errors)} answered 5xx and {len(unrefused)} with NUL were "
        f"not refused (400/404); the first of each:\n{shown}"
    )


# The issue's own examples, each with the answer it must get.
EXAMPLES = [
    ("/jobs/a%00b", 404),
    ("/api/v1/jobs/%00", 404),
    ("/questions/%00", 404),
    ("/api/v1/questions/%00/history", 404),
    ("/api/v1/executions?job_id=%00", 400),
    ("/questions/identity_basic?region=us-east%00", 400),
    ("/api/v1/questions/identity_basic/history?region=us-east%00", 400),
    ("/api/v1/questions/identity_basic/history?model_id=%00", 400),
    ("/api/v1/log/entries?start=2147483648", 400),
    ("/api/v1/log/entries?cursor=2147483648", 400),
    ("/api/v1/jobs?cursor=2147483648", 400),
    ("/api/v1/executions?cursor=2147483648", 400),
    ("/?before=2147483648", 400),
    ("/api/v1/executions/2147483648", 404),
    ("/executions/2147483648", 404),
    ("/api/v1/executions/2147483648/receipt", 404),
]


def test_the_issues_examples_are_refused_before_any_query(walked_app):
    app, _ = walked_app
    client = app.test_client()
    got = {path: client.get(path).status_code for path, _ in EXAMPLES}
    wrong = {path: (got[path], status) for path, status in EXAMPLES if got[path] != status}
    assert not wrong, f"(got, expected) for each path answered otherwise: {wrong}"


def test_the_row_id_bound_fits_every_integer_key_column():
    """`portal.db.MAX_ROW_ID` bounds row ids no view names a column for: no integer key column
    may hold less (every one is a 32-bit INTEGER on PostgreSQL today)."""
    keys = [
        column
        for table in db.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Integer) and (column.primary_key or column.foreign_keys)
    ]
    assert keys
    assert all(column_max(column) >= MAX_ROW_ID for column in keys), [
        (str(c), column_max(c)) for c in keys
    ]
