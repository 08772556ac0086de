"""What jobs cost (SPEC section 13), in this process against loopback providers: each answer's
cost from the tokens its provider reported and its price (a region's override wins), null
without usage; the job's sum; the estimate never below it; refusals over a budget or the answer
limit that leave no row; and a job that reaches its budget mid-run."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.engine import jobs
from portal.models import Answer, Execution, Job, UsedNonce
from portal.prices import TEMPLATE_TOKENS
from portal.provenance.log_models import Receipt
from portal.status import RunStatus
from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider
from tests.support.specs import job_spec

QUESTIONS = ["identity_basic", "geography_basic"]
IN, OUT, OVERRIDE_OUT = 3.0, 15.0, 30.0
MAX_TOKENS = 8


def config_text(openai_url: str, anthropic_url: str, intake: str = "") -> str:
    return f"""
[execution]
call_timeout_s = 5
max_attempts = 1
lease_s = 5

[intake]
timestamp_window_s = 0
{intake}

[regions.us-east]
provider = "openai"
base_url = "{openai_url}"

[regions.us-east.prices."paid"]
price_out_per_mtok = {OVERRIDE_OUT}

[regions.eu-west]
provider = "anthropic"
base_url = "{anthropic_url}"

[models.paid]
provider_model = "vendor/paid"
price_in_per_mtok = {IN}
price_out_per_mtok = {OUT}
max_tokens = {MAX_TOKENS}
default = true

[models.unpriced]
provider_model = "vendor/unpriced"

[models.free]
provider_model = "vendor/free"
price_in_per_mtok = 0
price_out_per_mtok = 0
"""


@pytest.fixture
def providers():
    with LoopbackProvider(label="us") as us, LoopbackProvider(label="eu") as eu:
        yield us, eu


@pytest.fixture
def cost_app(make_app, tmp_path, providers):
    """Builds an app on the priced two-region configuration; `intake` adds [intake] lines."""

    def build(intake: str = ""):
        us, eu = providers
        path = tmp_path / "beacon.toml"
        path.write_text(config_text(us.base_url_openai, eu.base_url_anthropic, intake), "utf-8")
        return make_app(BEACON_CONFIG=str(path), BEACON_SEMANTIC="0")

    return build


def submit(client, signer, models=("paid",), status=202, budget=None, runs=1):
    spec = job_spec(list(models), ["us-east", "eu-west"], QUESTIONS, runs=runs)
    if budget is not None:
        spec["constraints"]["max_cost_usd"] = budget
    response = client.post("/api/v1/jobs", data=signer.body(spec), content_type="application/json")
    assert response.status_code == status, response.json
    return response.json


def row_counts(app) -> tuple[int, ...]:
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(table))
            for table in (Job, Execution, Answer, UsedNonce)
        )


def expected_cost(prompt_tokens: int, completion_tokens: int, price_out: float) -> float:
    return (prompt_tokens * IN + completion_tokens * price_out) / 1_000_000


def test_each_answer_costs_its_tokens_at_its_price_and_the_job_sums_them(cost_app, signer):
    app = cost_app()
    client = app.test_client()
    job_id = submit(client, signer)["job"]["id"]
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    assert job["status"] == "completed"
    answers = [(e["region"], a) for e in job["executions"] for a in e["answers"]]
    assert len(answers) == 4
    for region, answer in answers:
        assert answer["completion_tokens"] == MAX_TOKENS  # cut at max_tokens, as sent
        price_out = OVERRIDE_OUT if region == "us-east" else OUT  # the region's override wins
        cost = expected_cost(answer["prompt_tokens"], answer["completion_tokens"], price_out)
        assert answer["cost_usd"] == pytest.approx(cost, rel=1e-12)
    total = sum(a["cost_usd"] for _, a in answers)
    assert job["cost_usd"] == pytest.approx(total, rel=1e-12)
    assert job["estimated_cost_usd"] >= job["cost_usd"]
    # The bound: every answer at its prompt's bytes plus the template allowance, and max_tokens.
    bound = 0.0
    for region, answer in answers:
        price_out = OVERRIDE_OUT if region == "us-east" else OUT
        tokens = len(answer["prompt"].encode()) + TEMPLATE_TOKENS
        bound += expected_cost(tokens, MAX_TOKENS, price_out)
    assert job["estimated_cost_usd"] == pytest.approx(bound, abs=2e-9)
    assert job["constraints"]["max_cost_usd"] is None


def test_a_reply_without_usage_costs_null_never_zero(cost_app, signer, providers):
    app = cost_app()
    client = app.test_client()
    us, _ = providers
    us.always("no-usage", prompt_contains="capital")
    job_id = submit(client, signer)["job"]["id"]
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    answers = [a for e in job["executions"] for a in e["answers"]]
    unknown = [a for a in answers if a["cost_usd"] is None]
    assert [(a["question_id"], a["prompt_tokens"]) for a in unknown] == [("geography_basic", None)]
    known = [a["cost_usd"] for a in answers if a["cost_usd"] is not None]
    assert len(known) == 3 and all(c > 0 for c in known)
    assert job["cost_usd"] == pytest.approx(sum(known), rel=1e-12)  # the known part


def test_an_unpriced_model_has_no_cost_and_no_estimate(cost_app, signer):
    app = cost_app()
    client = app.test_client()
    job = submit(client, signer, models=("unpriced",))["job"]
    assert (job["estimated_cost_usd"], job["cost_usd"]) == (None, None)
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job['id']}").json["job"]
    assert job["status"] == "completed" and job["cost_usd"] is None
    assert {a["cost_usd"] for e in job["executions"] for a in e["answers"]} == {None}


def test_over_budget_and_too_many_answers_are_refused_and_leave_no_row(cost_app, signer):
    app = cost_app("max_answers = 4")
    client = app.test_client()
    refused = submit(client, signer, status=400, budget=0.0001)["error"]
    assert refused["code"] == "over_budget"
    assert refused["message"].startswith("the job's 4 answers may cost up to $0.00")
    assert refused["message"].endswith("the budget is $0.000100 (constraints.max_cost_usd)")
    assert refused["fields"]["max_cost_usd"] == 0.0001
    assert refused["fields"]["estimated_cost_usd"] > 0.0001
    refused = submit(client, signer, status=400, runs=2)["error"]
    assert refused["code"] == "too_many_answers"
    assert refused["message"] == "8 answers requested; the limit is 4"
    # A budget on an unpriced model cannot be kept: refused too, naming the model.
    refused = submit(client, signer, models=("unpriced",), status=400, budget=5)
    assert refused["error"]["code"] == "over_budget"
    assert "model 'unpriced' in region 'us-east' is unknown" in refused["error"]["message"]
    assert row_counts(app) == (0, 0, 0, 0)


def test_the_portal_limit_holds_and_a_spec_may_only_lower_it(cost_app, signer):
    app = cost_app("max_job_cost_usd = 0.5")
    client = app.test_client()
    refused = submit(client, signer, status=400, runs=3, budget=0.00001)["error"]
    assert refused["code"] == "over_budget"
    job = submit(client, signer, budget=100)["job"]  # above the portal's limit
    assert job["constraints"]["max_cost_usd"] == 0.5
    assert 0 < job["estimated_cost_usd"] <= 0.5 and job["cost_usd"] == 0.0
    lowered = submit(client, signer, runs=2, budget=0.25)["job"]
    assert lowered["constraints"]["max_cost_usd"] == 0.25
    strict = cost_app("max_job_cost_usd = 0.000001")  # the same database, a stricter portal
    refused = submit(strict.test_client(), signer, runs=4, status=400)["error"]
    assert refused["code"] == "over_budget"
    assert "(the portal's [intake] max_job_cost_usd)" in refused["message"]


def test_a_job_reaching_its_budget_cancels_its_unstarted_answers(cost_app, signer, providers):
    app = cost_app()
    client = app.test_client()
    us, eu = providers
    # A provider counting far more prompt tokens than the bound allows (a hidden system
    # prompt, say): the first answer alone costs $3, over the job's $0.01.
    us.usage = eu.usage = (1_000_000, 1)
    job = submit(client, signer, budget=0.01)["job"]
    assert job["estimated_cost_usd"] < 0.01  # accepted: its bound was within the budget
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job['id']}").json["job"]
    answers = [a for e in job["executions"] for a in e["answers"]]
    assert [a["status"] for a in answers] == [RunStatus.COMPLETED] + [RunStatus.CANCELLED] * 3
    assert {a["error"] for a in answers[1:]} == {"budget reached"}
    assert len(us.calls) + len(eu.calls) == 1  # nothing unstarted was asked
    assert job["status"] == "partial"
    assert job["cost_usd"] == pytest.approx(answers[0]["cost_usd"]) and job["cost_usd"] >= 0.01
    statuses = {e["region"]: (e["status"], e["error"]) for e in job["executions"]}
    assert statuses["eu-west"] == ("cancelled", "budget reached")  # never claimed
    assert statuses["us-east"][0] == "cancelled"
    with app.app_context():
        # Every ended execution has its receipt, the one the budget ended included.
        ids = db.session.scalars(select(Receipt.execution_id)).all()
        assert sorted(set(ids)) == sorted(e["id"] for e in job["executions"])
        retried = jobs.find_job(job["id"])
        assert retried.cost_usd == job["cost_usd"]


def test_a_budget_of_zero_runs_free_models_to_the_end(cost_app, signer):
    app = cost_app("max_job_cost_usd = 0")
    client = app.test_client()
    assert submit(client, signer, status=400)["error"]["code"] == "over_budget"  # paid
    job = submit(client, signer, models=("free",))["job"]
    assert (job["estimated_cost_usd"], job["cost_usd"], job["constraints"]["max_cost_usd"]) == (
        0.0,
        0.0,
        0.0,
    )
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job['id']}").json["job"]
    assert job["status"] == "completed" and job["cost_usd"] == 0.0
    assert {a["cost_usd"] for e in job["executions"] for a in e["answers"]} == {0.0}
