"""Changes between runs (SPEC section 12): each ended job's answers against the newest earlier
ones. Real loopback providers and the engine in this process; the watcher's comparison pass is
called as the watcher calls it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.db import db
from portal.watch import changes, scans
from portal.watch.models import Change, ChangeScan
from tests.support.watching import MODEL, QUESTIONS, REFUSAL, Runs


@pytest.fixture
def runs(tmp_path, make_app, signer):
    runs = Runs(tmp_path, make_app, signer)
    yield runs
    runs.close()


def count_changes(app) -> int:
    with app.app_context():
        n = db.session.scalar(select(func.count()).select_from(Change))
        db.session.remove()
    return n


def test_a_region_that_starts_refusing_is_one_class_change_with_both_jobs(runs):
    first = runs.run()
    assert runs.changes() == []  # nothing earlier to compare with
    second = runs.run()
    assert runs.changes() == []  # the same answers again: nothing changed
    runs.say["asia-pacific"] = lambda region, prompt: REFUSAL
    runs.providers["asia-pacific"].reset()
    third = runs.run(questions=QUESTIONS[:1])
    found = runs.changes()
    assert len(found) == 1, found
    change = found[0]
    assert change["kind"] == "class"
    assert (change["job_id"], change["previous_job_id"]) == (third, second)
    assert (change["from_class"], change["to_class"]) == ("substantive", "refusal")
    assert (change["model_id"], change["region"]) == (MODEL, "asia-pacific")
    assert (change["question_id"], change["language"]) == (QUESTIONS[0], "en")
    assert change["question_version"] and change["similarity"] < 0.6
    assert first not in (change["job_id"], change["previous_job_id"])


def test_comparing_again_adds_nothing(runs):
    runs.run()
    runs.say["eu-west"] = lambda region, prompt: REFUSAL
    job_id = runs.run()
    assert count_changes(runs.app) == 2  # both questions, in eu-west
    with runs.app.app_context():
        assert changes.detect(job_id) == []  # the same comparison, recomputed
        db.session.commit()
        # A lapsed scan taken again by another process compares the job again: nothing new.
        db.session.get(ChangeScan, job_id).scanned_at = None
        db.session.commit()
        assert scans.scan_due("another-process") == 1
        db.session.remove()
    assert count_changes(runs.app) == 2
    assert runs.scan() == 0  # and nothing is due any more


def test_a_text_change_within_the_same_class(runs):
    runs.run()
    runs.say["us-east"] = lambda region, prompt: (
        "Completely different wording now: sunny weather, seven harbours, quiet mountains and "
        "many libraries were mentioned instead."
    )
    job_id = runs.run()
    found = runs.changes(region="us-east")
    assert {c["kind"] for c in found} == {"text"} and len(found) == len(QUESTIONS)
    for change in found:
        assert change["job_id"] == job_id
        assert change["from_class"] == change["to_class"] == "substantive"
        assert change["similarity"] < 0.6 and change["measure"] == "lexical"
    assert runs.changes(region="eu-west") == []


def test_a_text_change_within_the_earlier_jobs_own_spread_is_not_a_change(runs):
    # Three repeats that differ from each other as much as the next run differs from them.
    words = iter(["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu"])
    texts = {}

    def varied(region, prompt):
        key = (region, prompt, len(texts))
        texts[key] = next(words, "nu xi omicron")
        return texts[key]

    runs.say["us-east"] = varied
    runs.run(questions=QUESTIONS[:1], runs=3)
    assert runs.changes() == []
    runs.say["us-east"] = lambda region, prompt: "pi rho sigma"
    runs.run(questions=QUESTIONS[:1], runs=3)
    # Each text is 0 similar to the earlier ones, but so were the earlier repeats to each other.
    assert runs.changes(region="us-east") == []


def test_a_new_system_fingerprint_behind_the_same_name_is_a_served_by_change(runs):
    runs.run(questions=QUESTIONS[:1])
    runs.providers["eu-west"].label = "eu-west-v2"  # the loopback's fingerprint is fp-<label>
    job_id = runs.run(questions=QUESTIONS[:1])
    found = runs.changes()
    assert [c["kind"] for c in found] == ["served_by"]
    change = found[0]
    assert change["region"] == "eu-west" and change["job_id"] == job_id
    assert change["from_served"]["system_fingerprint"] == "fp-eu-west"
    assert change["to_served"]["system_fingerprint"] == "fp-eu-west-v2"
    assert change["from_served"]["model"] == change["to_served"]["model"]
    assert change["from_class"] == change["to_class"]


def test_filters_paging_and_bad_parameters(runs):
    runs.run()
    runs.say["eu-west"] = lambda region, prompt: REFUSAL
    runs.say["us-east"] = lambda region, prompt: REFUSAL
    runs.run()
    everything = runs.changes()
    assert len(everything) == 4
    assert [c["id"] for c in everything] == sorted((c["id"] for c in everything), reverse=True)
    page = runs.client.get("/api/v1/changes?limit=3").json
    rest = runs.client.get(f"/api/v1/changes?limit=3&cursor={page['next']}").json
    assert [c["id"] for c in page["items"] + rest["items"]] == [c["id"] for c in everything]
    assert rest["next"] is None
    assert {c["region"] for c in runs.changes(region="eu-west")} == {"eu-west"}
    assert len(runs.changes(question_id=QUESTIONS[1], kind="class", language="en")) == 2
    assert runs.changes(language="zh") == [] and runs.changes(model_id="other") == []
    for bad in ("kind=colour", "limit=0", "cursor=x", "colour=blue"):
        response = runs.client.get(f"/api/v1/changes?{bad}")
        assert response.status_code == 400, bad
        assert response.json["error"]["code"] == "invalid_parameter"


def test_job_and_question_pages_mark_the_changes(runs):
    runs.run()
    second = runs.run()
    runs.say["asia-pacific"] = lambda region, prompt: REFUSAL
    third = runs.run()
    html = runs.client.get(f"/jobs/{third}").get_data(as_text=True)
    assert 'id="changes"' in html and f'changed since <a href="/jobs/{second}">' in html
    assert 'id="changes"' not in runs.client.get(f"/jobs/{second}").get_data(as_text=True)
    history = runs.client.get(f"/questions/{QUESTIONS[0]}").get_data(as_text=True)
    assert 'id="recorded-changes"' in history and "class changed since" in history
