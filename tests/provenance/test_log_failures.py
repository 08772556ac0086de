"""A log that refuses appends never holds a job back (SPEC section 9, "Failure to append"),
in-process: after issue 24's rollback (the newest entries deleted and the head moved back, the
stored nodes left, so every append meets the log's unique constraint) a new job still ends,
its receipts wait, /ready names the log once they waited over a minute, /metrics counts the
failures and the waiting receipts, and the sweep appends them once the log is repaired.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from flask_migrate import stamp
from prometheus_client import REGISTRY

from portal.db import db
from portal.provenance import receipts, waiting
from tests.support.apps import spec_3x3
from tests.support.inline import run_inline
from tests.support.verify_portal import Database
from tests.support.workers import Engine, submit

SEED = bytes(range(7, 39))


def append_failures() -> float:
    return REGISTRY.get_sample_value("beacon_log_append_failures_total") or 0.0


@pytest.fixture
def portal(tmp_path, database_url, make_app):
    engine = Engine(tmp_path, database_url)
    database = Database(database_url)
    try:
        providers = engine.three_providers()
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        app = make_app(
            BEACON_CONFIG=str(config),
            BEACON_SIGNING_KEY=base64.b64encode(SEED).decode(),
            BEACON_LOG_ORIGIN="beacon.test/failures",
        )
        with app.app_context():
            stamp()  # the tables come from create_all: /ready then reads no pending migration
        yield app, database
    finally:
        database.engine.dispose()
        engine.close()


def test_a_refused_append_never_holds_a_job(portal, signer):
    app, database = portal
    client = app.test_client()
    for question in ("identity_basic", "math_basic"):
        submit(client, signer, spec_3x3(questions=[question]))
        run_inline(app)
    assert client.get("/api/v1/log/checkpoint").json["size"] == 18

    database.roll_back_head(9)
    before = append_failures()
    job_id = submit(client, signer, spec_3x3(questions=["geography_basic"]))
    run_inline(app)
    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    assert job["status"] == "completed" and job["finished_at"], job
    assert append_failures() == before + 9
    executions = [e["id"] for e in job["executions"]]
    response = client.get(f"/api/v1/executions/{executions[0]}/receipt")
    assert response.status_code == 404 and response.json["error"]["code"] == "receipt_not_found"
    with app.app_context():
        assert sorted(waiting.waiting_ids()) == sorted(executions)
        db.session.commit()

    # Waiting for less than a minute: ready, saying so.
    response = client.get("/ready")
    assert response.status_code == 200 and response.json["log"] == "9 receipt(s) waiting"
    # Over a minute (the ends moved two minutes back): 503 naming the log.
    database.shift_ends(job_id, -timedelta(minutes=2))
    response = client.get("/ready")
    assert response.status_code == 503, response.json
    assert response.json["log"].startswith("9 receipt(s) waiting, the oldest since ")
    message = response.json["error"]["message"]
    assert "the transparency log takes no appends: 9 receipt(s)" in message
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "beacon_receipts_waiting 9.0" in metrics
    assert f"beacon_log_append_failures_total {before + 9}" in metrics

    # A sweep while the log still refuses: one attempt, counted, and nothing moves.
    with app.app_context():
        assert receipts.issue_recent() == 0
    assert append_failures() == before + 10

    # Repaired (the stored tree rebuilt from the entries left): the sweep appends the waiting
    # receipts first, then the deleted ones it finds missing.
    database.rebuild_log()
    with app.app_context():
        assert receipts.issue_recent() == 18
        assert waiting.waiting_ids() == []
        db.session.commit()
    assert client.get("/ready").status_code == 200
    assert client.get("/api/v1/log/checkpoint").json["size"] == 27
    found = client.get(f"/api/v1/executions/{executions[0]}/receipt").json
    assert 9 <= found["log_index"] < 18
    assert "beacon_receipts_waiting 0.0" in client.get("/metrics").get_data(as_text=True)
