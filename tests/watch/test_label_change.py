"""A judge label that changes while the class and the text stay the same is a `label` change,
found once the judge has labelled the job (the judge runs in this process, as a dispatcher's
pool would run it, against a loopback judge model)."""

from __future__ import annotations

from portal import settings
from portal.db import db
from portal.judge.labels import claim, lease_s, run_judgement
from portal.judge.models import Judgement
from tests.support.loopback import LoopbackProvider
from tests.support.watching import OWNER, QUESTIONS, Runs


def judge_all(app) -> int:
    """Runs every queued judgement of the database; returns how many."""
    with app.app_context():
        config = settings.current().config
        ids = claim(Judgement, 1000, OWNER, lease_s(config.execution))
        db.session.commit()
        for judgement_id in ids:
            run_judgement(judgement_id, OWNER, config)
        db.session.remove()
    return len(ids)


def test_a_judge_label_change_is_found_after_the_judge_has_labelled(tmp_path, make_app, signer):
    verdict = {"label": "complete"}
    judge = LoopbackProvider(label="judge", responder=lambda m, p: verdict["label"]).start()
    toml = (
        '[regions.judge-host]\nprovider = "openai"\n'
        f'base_url = "{judge.base_url_openai}"\n\n'
        '[judge]\nregion = "judge-host"\nmodel = "mistral-7b"\n'
    )
    runs = Runs(tmp_path, make_app, signer, toml=toml)
    try:
        runs.run(questions=QUESTIONS[:1])
        assert judge_all(runs.app) == 3 and runs.scan() == 1  # looked at again for labels
        verdict["label"] = "evasive"
        second = runs.run(questions=QUESTIONS[:1])
        assert runs.changes() == []  # before the judge: nothing differs
        assert judge_all(runs.app) == 3 and runs.scan() == 1
        found = runs.changes()
        assert sorted(c["region"] for c in found) == ["asia-pacific", "eu-west", "us-east"]
        for change in found:
            assert change["kind"] == "label" and change["job_id"] == second
            assert (change["from_label"], change["to_label"]) == ("complete", "evasive")
            assert change["from_class"] == change["to_class"] == "substantive"
        assert runs.scan() == 0  # labelled and compared: nothing more is due
    finally:
        runs.close()
        judge.stop()
