"""Issue 20, item 3: the schemathesis run of tests/test_schemathesis.py, with NUL in generated
strings and integers past the columns' types, against gunicorn on PostgreSQL (TEST_DATABASE_URL;
without it the test is skipped, loudly: SQLite stores NUL and 2**31, and the run says little).

Each generated case keeps its values, or has one parameter swapped for a hostile one: its value
with NUL appended, a lone NUL, or 2**31, 2**63 - 1 and 2**63 for a number or a cursor. Every
answer must be documented and no 5xx (PostgreSQL answered 500: `text` cannot hold NUL and every
id and `log_index` column is a 32-bit `integer`).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from portal import __version__
from portal.web.api import openapi
from tests.support.apps import THREE_REGIONS, Signer, pg_test_url, reset_postgres, spec_3x3
from tests.support.live_server import live_server

from .test_schemathesis import EXECUTION_IDS, JOB_IDS, post_json

pytestmark = pytest.mark.live

DOCUMENT = openapi.document(__version__)
# Only reading operations: a hostile value in a signed body is the intake's own tests' matter.
schema = schemathesis.openapi.from_dict(DOCUMENT).include(method="GET")
# Parameters that are numbers to the portal, whatever type the document gives them.
NUMERIC = {"limit", "cursor", "start", "index", "size", "old", "new", "execution_id"}
BIG = [2**31, 2**63 - 1, 2**63]


def hostile_values(name: str, kind: str | None, value) -> list:
    """The values a parameter is swapped for: NUL in text, out-of-range numbers."""
    found = []
    if kind == "integer" or name in NUMERIC:
        found += BIG if kind == "integer" else [str(n) for n in BIG]
    if kind != "integer":
        found += [f"{value if isinstance(value, str) else ''}\x00", "\x00"]
    return found


def swapped(parameters, values: dict) -> list[dict]:
    variants = []
    for parameter in parameters:
        kind = (parameter.definition.get("schema") or {}).get("type")
        name = parameter.name
        for bad in hostile_values(name, kind, values.get(name)):
            variants.append({**values, name: bad})
    return variants


@schema.hook
def flatmap_query(context, query):
    """Keeps the generated query, or swaps one parameter for a hostile value."""
    variants = swapped(context.operation.query, dict(query or {}))
    return st.just(query) | st.sampled_from(variants) if variants else st.just(query)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Keeps the generated ids, swaps in ids of rows that exist, or hostile values."""
    values = dict(path_parameters or {})
    if not values:
        return st.just(path_parameters)
    existing = {"job_id": JOB_IDS, "execution_id": EXECUTION_IDS}
    real = {
        name: st.sampled_from(existing[name]) if name in existing else st.just(value)
        for name, value in values.items()
    }
    variants = swapped(context.operation.path_parameters, values)
    return st.just(values) | st.fixed_dictionaries(real) | st.sampled_from(variants)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A live server on PostgreSQL (TEST_DATABASE_URL) with two queued jobs."""
    signer = Signer()
    env = {
        "BEACON_CONFIG": str(THREE_REGIONS),
        "BEACON_TRUSTED_KEYS": json.dumps([signer.trusted_entry()]),
        "BEACON_ADMIN_TOKEN": "schemathesis-admin-token",
    }
    url = pg_test_url()
    if url is None:
        pytest.skip("!!! this run needs PostgreSQL: set TEST_DATABASE_URL; it DID NOT RUN")
    reset_postgres(url)
    env["DATABASE_URL"] = url
    with live_server(env, tmp_path_factory.mktemp("schemathesis-hostile")) as base:
        specs = [spec_3x3(id="seeded-3x3"), spec_3x3(id="seeded-one", questions=["math_basic"])]
        specs[1]["metadata"]["models"] = ["mistral-7b"]
        for spec in specs:
            status, doc = post_json(f"{base}/api/v1/jobs", signer.body(spec))
            assert status == 202, doc
        yield base


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_text_and_numbers_get_documented_answers_and_no_5xx(case, seeded):
    # Hostile values make a "valid-looking" request one the API must refuse: the positive and
    # negative acceptance checks do not apply; every other check does.
    case.call_and_validate(
        base_url=seeded,
        timeout=30,
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
