"""Cost where people read it (SPEC section 13): the form's estimate before submitting (with and
without JavaScript), the job page, the execution page, the CSV and the model listing."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.support.html_check import assert_valid_page
from tests.support.inline import run_inline
from tests.support.jobs import page
from tests.support.loopback import LoopbackProvider

HX = {"HX-Request": "true"}
FORM = {"questions": ["identity_basic", "geography_basic"], "models": ["paid"], "regions": ["r1"]}


@pytest.fixture
def provider():
    with LoopbackProvider(label="r1") as server:
        yield server


@pytest.fixture
def cost_app(make_app, tmp_path, provider):
    def build(intake: str = ""):
        path = tmp_path / "beacon.toml"
        path.write_text(
            f"[intake]\n{intake}\n"
            f'[regions.r1]\nname = "Region One"\nprovider = "openai"\n'
            f'base_url = "{provider.base_url_openai}"\n'
            '[models.paid]\nname = "Paid"\nprice_in_per_mtok = 2.5\nprice_out_per_mtok = 10\n'
            "max_tokens = 6\ndefault = true\n"
            '[models.unpriced]\nname = "Unpriced"\n',
            "utf-8",
        )
        return make_app(BEACON_CONFIG=str(path), BEACON_SEMANTIC="0")

    return build


def shown_estimate(html: str) -> float:
    return float(re.search(r'data-estimate-usd="([0-9.e-]+)"', html).group(1))


def test_the_form_shows_the_estimate_before_submitting(cost_app, client):
    app = cost_app("max_job_cost_usd = 2")
    client = app.test_client()
    html = page(client, "/jobs/new")
    assert_valid_page(html)
    assert "Estimated cost" in html and "Budget per job: $2.00." in html
    # Without JavaScript: the "Update the estimate" button posts the form to the estimate page.
    updated = client.post("/jobs/new/estimate", data={**FORM, "runs": "3"})
    assert updated.status_code == 200
    full = updated.get_data(as_text=True)
    assert_valid_page(full)
    assert "<strong>6</strong> answers" in full and 'name="runs"' in full  # the whole form again
    # With htmx: only the estimate's fragment, for the section to swap itself.
    fragment = client.post("/jobs/new/estimate", data=FORM, headers=HX).get_data(as_text=True)
    assert (
        fragment.startswith('<section id="job-estimate"')
        and "<strong>2</strong> answers" in fragment
    )
    estimate = shown_estimate(fragment)
    # The estimate shown is the one the submitted job carries.
    response = client.post("/jobs/new", data=FORM)
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert client.get(f"/api/v1/jobs/{job_id}").json["job"]["estimated_cost_usd"] == estimate


def test_the_form_says_when_a_job_is_over_its_budget_or_unpriced(cost_app):
    client = cost_app("max_job_cost_usd = 0.0001").test_client()
    fragment = client.post("/jobs/new/estimate", data={**FORM, "runs": "10"}, headers=HX)
    assert "Over the budget: the portal will refuse this job." in fragment.get_data(as_text=True)
    refused = client.post("/jobs/new", data={**FORM, "runs": "10"})
    assert refused.status_code == 422
    assert "may cost up to" in refused.get_data(as_text=True)
    unpriced = client.post("/jobs/new/estimate", data={**FORM, "models": ["unpriced"]}, headers=HX)
    assert "the cost is unknown: no price for unpriced in r1" in unpriced.get_data(as_text=True)
    broken = client.post("/jobs/new/estimate", data={**FORM, "prompt": "oneword"}, headers=HX)
    assert "No estimate yet: unknown question id &#39;oneword&#39;" in broken.get_data(as_text=True)


def test_the_job_execution_pages_csv_and_models_show_cost(cost_app, provider):
    app = cost_app()
    client = app.test_client()
    response = client.post("/jobs/new", data=FORM)
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    costs = [a["cost_usd"] for e in job["executions"] for a in e["answers"]]
    assert all(c > 0 for c in costs) and job["cost_usd"] == pytest.approx(sum(costs))
    html = page(client, f"/jobs/{job_id}")
    assert_valid_page(html)
    cost_line = re.search(r'<p class="job-cost">(.*?)</p>', html, re.S).group(1)
    assert f'data-cost-usd="{job["cost_usd"]}"' in cost_line
    assert "estimated at most $0.00" in cost_line and "so far" not in cost_line
    execution = page(client, f"/executions/{job['executions'][0]['id']}")
    assert_valid_page(execution)
    assert execution.count("<dt>Cost</dt>") == 2 and "<dd>$0.0000" in execution
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"/api/v1/jobs/{job_id}/comparison.csv").text))
    )
    assert [float(r["cost_usd"]) for r in rows] == pytest.approx(costs)
    models = {m["id"]: m for m in client.get("/api/v1/models").json["items"]}
    assert (models["paid"]["price_in_per_mtok"], models["paid"]["price_out_per_mtok"]) == (2.5, 10)
    assert models["unpriced"]["price_in_per_mtok"] is None
