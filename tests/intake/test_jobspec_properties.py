"""Intake under random input: any body, any valid spec, any one-field mutation of a valid spec.

Whatever arrives, `POST /api/v1/jobs` answers with a status and code listed in docs/api.md, never
500, and a refused body leaves no row behind. Valid specs always yield one execution per
(model, region) after deduplication.
"""

from __future__ import annotations

import copy
import itertools
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from portal.config import load_config
from portal.db import db
from portal.errors import DomainError
from portal.intake import jobspec
from portal.models import Answer, Execution, Job, UsedNonce
from portal.web.errors import http_status
from tests.support.apps import ROOT, THREE_REGIONS, spec_3x3

CONFIG = load_config(str(THREE_REGIONS))
MODEL_IDS = list(CONFIG.models)
REGION_NAMES = [name for r in CONFIG.regions.values() for name in (r.id, *r.aliases)]
QUESTION_IDS = list(CONFIG.questions)


def documented_codes() -> dict[str, int]:
    """Reads the error table of docs/api.md into {code: status}."""
    codes = {}
    for line in (ROOT / "docs" / "api.md").read_text("utf-8").splitlines():
        row = re.match(r"\|\s*(\d{3})\s*\|([^|]*)\|", line)
        if row:
            for code in re.findall(r"`([a-z_]+)`", row.group(2)):
                codes[code] = int(row.group(1))
    return codes


DOCUMENTED = documented_codes()
REFUSALS = {code: status for code, status in DOCUMENTED.items() if 400 <= status < 500}

# One app per test (not per example): the function-scoped fixture is shared on purpose, with
# unique nonces and ids keeping examples apart.
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
KNOWN_KEYS = [
    *jobspec.FIELD_TYPES,
    "jobspec",
    "target_regions",
    "wallet_auth",
    "questions",
    "metadata",
]
# Objects that look like specs: known keys with random values, sometimes nested known keys.
spec_like = st.dictionaries(
    st.sampled_from(KNOWN_KEYS) | st.text(max_size=8),
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            **{k: json_values for k in jobspec.CONSTRAINT_TYPES},
            "models": json_values,
            "nonce": json_values,
            "timestamp": json_values,
            "input": json_values,
            "data": st.dictionaries(st.just("prompt"), json_values),
        },
    ),
    max_size=8,
)
any_body = json_values | spec_like


def row_counts(app) -> tuple[int, ...]:
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Job, Execution, Answer, UsedNonce)
        )


def post(client, body: bytes):
    return client.post("/api/v1/jobs", data=body, content_type="application/json")


def assert_documented_refusal(response) -> None:
    """The response is a 4xx whose code docs/api.md lists under that status."""
    assert response.status_code != 500, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)[:300]
    error = response.json["error"]
    assert error["code"] in REFUSALS, error
    assert response.status_code == REFUSALS[error["code"]], (response.status_code, error)
    assert isinstance(error["message"], str) and error["message"]


def assert_executions(job: dict, models: list[str], regions: list[str], answers: int) -> None:
    """One execution per (model, region), model-major, each naming its model and region."""
    pairs = [(e["model_id"], e["region"]) for e in job["executions"]]
    assert pairs == [(m, r) for m in models for r in regions]
    for execution in job["executions"]:
        assert execution["model_name"] == CONFIG.models[execution["model_id"]].name
        # A big job's answers are paged (docs/api.md): the document then only counts them.
        if "answers" in execution:
            assert len(execution["answers"]) == answers
    if "answers_page" in job:
        assert job["answers_page"]["total"] == len(pairs) * answers
    assert job["counts"]["total"] == len(pairs) * answers


@pytest.fixture
def app3_unlimited(make_app, tmp_path):
    # Hypothesis submits far more specs a minute than the default submission limit allows.
    config = tmp_path / "unlimited.toml"
    config.write_text(THREE_REGIONS.read_text("utf-8") + '\n[intake]\nrate_limit = ""\n')
    return make_app(BEACON_CONFIG=str(config))


def test_documented_codes_are_read():
    assert DOCUMENTED["invalid_json"] == 400
    assert DOCUMENTED["job_not_found"] == 404 and DOCUMENTED["execution_not_found"] == 404
    assert DOCUMENTED["too_large"] == 413 and DOCUMENTED["internal_error"] == 500


def test_any_json_body_is_refused_with_a_documented_code(app3_unlimited):
    client = app3_unlimited.test_client()

    @PROPERTY
    @given(body=any_body)
    def check(body):
        assert_documented_refusal(post(client, json.dumps(body).encode()))
        assert row_counts(app3_unlimited) == (0, 0, 0, 0)

    check()


def test_unsigned_bytes_are_refused_with_a_documented_code(app3_unlimited):
    client = app3_unlimited.test_client()

    @PROPERTY
    @given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
    def check(raw):
        assert_documented_refusal(post(client, raw))
        assert row_counts(app3_unlimited) == (0, 0, 0, 0)

    check()


def model_entry(model_id: str):
    return st.sampled_from(
        [model_id, {"id": model_id}, {"id": model_id, "name": "any name"}, f" {model_id} "]
    )


random_case = st.sampled_from(REGION_NAMES).flatmap(
    lambda name: st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(
            c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True)
        )
    )
)
prompts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
).map(lambda t: f"Please answer: {t}")


@st.composite
def valid_specs(draw) -> tuple[dict, list[str], list[str], int]:
    """A valid unsigned spec, with the models, regions and answers per execution it implies."""
    models = draw(st.lists(st.sampled_from(MODEL_IDS), max_size=5))
    entries = [draw(model_entry(m)) for m in models]
    regions = draw(st.lists(random_case, max_size=5))
    questions = draw(st.lists(st.sampled_from(QUESTION_IDS) | prompts, max_size=4))
    runs = draw(st.integers(1, 3))
    spec = spec_3x3(runs=runs, questions=questions)
    spec["constraints"]["regions"] = regions
    if draw(st.booleans()):
        spec["metadata"]["models"] = entries
    else:
        del spec["metadata"]["models"]
        spec["models"] = entries
    unique_models = list(dict.fromkeys(models)) or [m.id for m in CONFIG.default_models()]
    resolved = [CONFIG.find_region(r).id for r in regions]
    unique_regions = list(dict.fromkeys(resolved)) or list(CONFIG.regions)
    asked = len(questions) or 1  # no questions: the benchmark prompt
    return spec, unique_models, unique_regions, asked * runs


def test_valid_specs_fan_out_to_every_model_and_region(app3_unlimited, signer):
    client = app3_unlimited.test_client()
    serial = itertools.count()

    @PROPERTY
    @given(drawn=valid_specs())
    def check(drawn):
        spec, models, regions, answers = drawn
        spec["metadata"]["nonce"] = f"valid-{next(serial)}"
        body = signer.body(spec)
        first = post(client, body)
        assert first.status_code == 202, first.json
        assert first.json["idempotent"] is False
        assert_executions(first.json["job"], models, regions, answers)
        again = post(client, body)
        assert again.status_code == 200, again.json
        assert again.json["idempotent"] is True
        assert again.json["job"]["id"] == first.json["job"]["id"]

    check()


# Where one field of a valid spec is replaced: every known field, constraints.*, metadata.*,
# the benchmark prompt's path, and single entries of the lists.
MUTATION_PATHS = [
    *[(name,) for name in jobspec.FIELD_TYPES if name not in ("signature", "public_key")],
    ("wallet_auth",),
    *[("constraints", name) for name in jobspec.CONSTRAINT_TYPES],
    ("metadata", "models"),
    ("metadata", "nonce"),
    ("metadata", "timestamp"),
    ("metadata", "expected_executions"),
    ("metadata", "models", 0),
    ("constraints", "regions", 0),
    ("questions", 0),
    ("benchmark", "input"),
    ("benchmark", "input", "data"),
    ("benchmark", "input", "data", "prompt"),
]
# Replaced after signing: the signature fields themselves.
SIGNATURE_PATHS = [("signature",), ("public_key",)]
mutation_values = (
    json_values
    | st.sampled_from([0, -1, 10**12, 1.5, True, "", " ", "us-east\n", "a\nb", [], {}, [None]])
    | st.datetimes().map(lambda d: d.isoformat())
)


def set_path(target: dict, path: tuple, value: object) -> None:
    """Replaces the value at `path`; an index past the end of a list appends."""
    for step in path[:-1]:
        target = target[step]
    last = path[-1]
    if isinstance(target, list) and last >= len(target):
        target.append(value)
    else:
        target[last] = value


def test_one_mutated_field_is_refused_or_accepted_never_a_server_error(app3_unlimited, signer):
    client = app3_unlimited.test_client()
    serial = itertools.count()

    @PROPERTY
    @given(
        path=st.sampled_from(MUTATION_PATHS + SIGNATURE_PATHS),
        value=mutation_values,
        with_questions=st.booleans(),
    )
    def check(path, value, with_questions):
        spec = spec_3x3() if with_questions else spec_3x3(questions=[])
        spec["metadata"]["nonce"] = f"mutated-{next(serial)}"
        if path in SIGNATURE_PATHS:
            spec = signer.sign(spec)
            set_path(spec, path, value)
        else:
            set_path(spec, path, value)
            spec = signer.sign(spec)
        before = row_counts(app3_unlimited)
        response = post(client, json.dumps(spec).encode())
        if response.status_code in (200, 202):
            job = response.json["job"]
            assert job["executions"], job
            for execution in job["executions"]:
                assert execution["model_id"] in CONFIG.models
                assert execution["region"] in CONFIG.regions
                assert execution["model_name"] == CONFIG.models[execution["model_id"]].name
        else:
            assert_documented_refusal(response)
            assert row_counts(app3_unlimited) == before

    check()


def test_job_id_with_a_trailing_newline_is_refused(app3_unlimited, signer):
    """`$` in a pattern also matches before a final newline; an id must not carry one."""
    response = post(app3_unlimited.test_client(), signer.body(spec_3x3(id="job-1\n")))
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_field"
    assert row_counts(app3_unlimited) == (0, 0, 0, 0)


@pytest.mark.parametrize("value", ["Who are you?", True, ["Who are you?"]])
def test_benchmark_input_that_is_not_an_object_means_no_prompt(app3_unlimited, signer, value):
    spec = spec_3x3(questions=[])
    spec["benchmark"]["input"] = value
    response = post(app3_unlimited.test_client(), signer.body(spec))
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "no_prompt"


def test_negative_timeout_is_refused(app3_unlimited, signer):
    """A negative timeout would put the job's deadline before its submission."""
    spec = spec_3x3()
    spec["constraints"]["timeout"] = -1
    response = post(app3_unlimited.test_client(), signer.body(spec))
    assert response.status_code == 400, response.json
    assert response.json["error"]["fields"] == {"constraints.timeout": "-1"}


@PROPERTY
@given(spec=spec_like)
def test_normalize_raises_only_documented_refusals(spec):
    try:
        normalized = jobspec.normalize(copy.deepcopy(spec), CONFIG)
    except DomainError as exc:
        # The domain says what is wrong; the web edge alone picks the HTTP status.
        assert not hasattr(exc, "status"), exc
        status = http_status(exc)
        assert exc.code in REFUSALS and status == REFUSALS[exc.code], (exc.code, status)
        return
    assert normalized.models and normalized.regions and normalized.questions
    assert 1 <= normalized.runs <= jobspec.MAX_RUNS
