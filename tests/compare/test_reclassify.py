"""One classification path: a change of the refusal rules after a job has ended reaches its
comparison JSON, its CSV, its pages and its stored answers on their next use, and
`flask beacon recompare` brings every ended job up to date at once. The engine runs in this
process (tests/support/inline.py) against loopback providers, so these take seconds."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from portal.compare import classify, rules
from portal.compare.rules import REFUSAL, SUBSTANTIVE
from tests.support.apps import spec_3x3
from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider, refusing_responder
from tests.support.workers import REGIONS, get_job, submit, write_config

NEW_PHRASE = r"\banswers:"  # every echoed answer of the loopback providers says "answers:"


@pytest.fixture
def ended_job(make_app, signer, tmp_path):
    """A one-model, three-region job run to its end; asia-pacific refuses the Tiananmen one."""
    providers = {
        region: LoopbackProvider(
            label=region,
            responder=refusing_responder("tiananmen", region) if region == "asia-pacific" else None,
        ).start()
        for region in REGIONS
    }
    try:
        config = write_config(
            tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in providers.items()}
        )
        app = make_app(BEACON_CONFIG=str(config))
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3(metadata={"models": ["llama3.2-1b"]}))
        assert len(run_inline(app)) == 3
        assert get_job(client, job_id)["status"] == "completed"
        yield app, client, job_id
    finally:
        for provider in providers.values():
            provider.stop()


@pytest.fixture
def change_refusal_rule(monkeypatch):
    """Returns a function that teaches the English refusal rule one more phrase (for this test
    only: the rules module is restored afterwards)."""

    def change(phrase: str = NEW_PHRASE) -> None:
        changed = tuple(
            replace(rule, patterns=(*rule.patterns, phrase))
            if rule.name == "refusal_phrase_en"
            else rule
            for rule in rules.RULES
        )
        monkeypatch.setattr(rules, "RULES", changed)

    return change


def comparison(client, job_id: str) -> dict:
    response = client.get(f"/api/v1/jobs/{job_id}/comparison")
    assert response.status_code == 200, response.json
    return response.json["comparison"]


def json_classes(doc: dict) -> dict:
    """{(question_index, region): class} from the comparison JSON (one model, one run)."""
    return {
        (q["question_index"], a["region"]): a["classification"]
        for m in doc["models"]
        for q in m["questions"]
        for a in q["answers"]
    }


def csv_classes(client, job_id: str) -> dict:
    response = client.get(f"/api/v1/jobs/{job_id}/comparison.csv")
    assert response.status_code == 200
    rows = csv.DictReader(io.StringIO(response.get_data(as_text=True)))
    return {(int(r["question_index"]), r["region"]): r["classification"] for r in rows}


class _Badges(HTMLParser):
    """Collects the class badge of each answer cell of the job page, by question and region."""

    def __init__(self, names: dict[str, str]):
        super().__init__()
        self.names = names  # region name -> region id
        self.question = -1
        self.region = None
        self.found: dict[tuple[int, str], str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "article" and "question" in classes:
            self.question += 1
        elif tag == "section" and "cell" in classes:
            self.region = self.names[attrs["aria-label"].split(" in ", 1)[1]]
        elif tag == "span" and self.region and "class" in classes:
            badge = next(c for c in classes if c.startswith("class-"))
            self.found[(self.question, self.region)] = badge.removeprefix("class-")


def page_classes(client, job_id: str) -> dict:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200
    parser = _Badges({name: region for region, (name, _) in REGIONS.items()})
    parser.feed(response.get_data(as_text=True))
    return parser.found


def stored_classes(client, job_id: str) -> dict:
    job = get_job(client, job_id)
    return {
        (a["question_index"], e["region"]): a["classification"]
        for e in job["executions"]
        for a in e["answers"]
    }


def expected_classes(client, job_id: str) -> dict:
    """What the rules in force now say of every answer, computed from the outputs alone."""
    job = get_job(client, job_id)
    return {
        (a["question_index"], e["region"]): classify(
            a["output"], status=a["status"], error=a["error"], prompt=a["prompt"]
        )
        for e in job["executions"]
        for a in e["answers"]
    }


def test_a_refusal_rule_changed_after_the_job_ended_reaches_json_csv_and_page(
    ended_job, change_refusal_rule
):
    _, client, job_id = ended_job
    before = comparison(client, job_id)
    old = json_classes(before)
    assert old[(1, "asia-pacific")] == REFUSAL
    assert sorted(set(old.values())) == [REFUSAL, SUBSTANTIVE]
    assert page_classes(client, job_id) == csv_classes(client, job_id) == old

    change_refusal_rule()

    after = comparison(client, job_id)
    new = json_classes(after)
    assert new == expected_classes(client, job_id)
    assert set(new.values()) == {REFUSAL}  # every echoed answer now says the new phrase
    assert after["rules_version"] == rules.rules_version() != before["rules_version"]
    assert csv_classes(client, job_id) == new
    assert page_classes(client, job_id) == new
    assert stored_classes(client, job_id) == new
    assert after["models"][0]["refusal_regions"] == list(REGIONS)


def test_recompare_updates_every_stale_ended_job_once(ended_job, change_refusal_rule):
    app, client, job_id = ended_job
    comparison(client, job_id)  # cached under the rules as they were
    runner = app.test_cli_runner()
    unchanged = runner.invoke(args=["beacon", "recompare"])
    assert unchanged.exit_code == 0, unchanged.output
    assert "recompared 0 of 1 ended jobs" in unchanged.output

    change_refusal_rule()
    result = runner.invoke(args=["beacon", "recompare"])
    assert result.exit_code == 0, result.output
    assert "recompared 1 of 1 ended jobs" in result.output
    assert "8 answers changed class" in result.output
    assert stored_classes(client, job_id) == expected_classes(client, job_id)
    with app.app_context():
        from portal.compare import report
        from portal.engine.jobs import find_job

        job = find_job(job_id)
        assert job.comparison_cache["key"]["rules"] == rules.rules_version()
        assert job.comparison_cache["doc"]["rules_version"] == rules.rules_version()
        assert report.job_comparison(job) == job.comparison_cache["doc"]

    missing = runner.invoke(args=["beacon", "recompare", "--job", "no-such-job"])
    assert missing.exit_code != 0 and "job_not_found" in missing.output


def test_a_running_job_page_uses_the_comparison_for_classes_and_differs(make_app, signer, tmp_path):
    # Two of three executions (us-east, eu-west) run; the page of the running job must show
    # the classes and the "differs" filter of the same comparison the API serves.
    providers = {
        region: LoopbackProvider(
            label=region,
            responder=refusing_responder("tiananmen", region) if region == "eu-west" else None,
        ).start()
        for region in REGIONS
    }
    try:
        config = write_config(
            tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in providers.items()}
        )
        app = make_app(BEACON_CONFIG=str(config))
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3(metadata={"models": ["llama3.2-1b"]}))
        assert len(run_inline(app, limit=2)) == 2
        assert get_job(client, job_id)["status"] == "running"
        doc = comparison(client, job_id)
        answered = {k: v for k, v in json_classes(doc).items() if v is not None}
        assert len(answered) == 6
        assert page_classes(client, job_id) == answered
        differing = [q["question_index"] for q in doc["models"][0]["questions"] if q["differs"]]
        assert 1 in differing  # refused in eu-west only: the classes disagree
        shown = client.get(f"/jobs/{job_id}?differs=1").get_data(as_text=True)
        assert shown.count('<article class="question') == len(differing)
        assert shown.count('<article class="question differs"') == 0  # flags wait for the end
    finally:
        for provider in providers.values():
            provider.stop()
