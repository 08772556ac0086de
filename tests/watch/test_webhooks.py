"""Webhooks (SPEC section 12): every change POSTed as Standard Webhooks says, verified by the
`standardwebhooks` package's own verifier; a 500 is retried with backoff until delivered, a
receiver that never answers is given up on after a bounded number of bounded attempts, and
the webhook URL's query string is in no log line and on no page."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from portal.db import db
from portal.watch import webhooks
from portal.watch.models import Delivery
from tests.support.live_server import wait_until
from tests.support.watching import OWNER, QUESTIONS, REFUSAL, Runs, new_secret
from tests.support.webhook_receiver import Receiver

QUERY = "token=s3cret-in-the-query"


def watch_toml(url: str, **settings) -> str:
    lines = ["[watch]", f'webhook_url = "{url}?{QUERY}"', 'webhook_secret_env = "HOOK_SECRET"']
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def secret(monkeypatch):
    value = new_secret()
    monkeypatch.setenv("HOOK_SECRET", value)
    return value


@pytest.fixture
def receiver(secret):
    receiver = Receiver(secret).start()
    yield receiver
    receiver.stop()


def make_runs(tmp_path, make_app, signer, receiver, **settings) -> Runs:
    toml = watch_toml(receiver.url, **settings)
    return Runs(tmp_path, make_app, signer, toml=toml, BEACON_ADMIN_TOKEN="tok")


def admin_page(runs: Runs, path: str) -> str:
    """Signs in with the admin token and returns the page."""
    assert runs.client.post("/login", data={"token": "tok"}).status_code == 303
    response = runs.client.get(path)
    assert response.status_code == 200, path
    return response.get_data(as_text=True)


def deliver_due(app) -> list[str]:
    """One watcher pass of deliveries, run here one after another."""
    with app.app_context():
        watch = app.extensions["beacon"].config.watch
        ids = webhooks.claim(OWNER, watch, 10)
        db.session.commit()
        try:
            return [webhooks.deliver(i, OWNER, watch, "test") for i in ids]
        finally:
            db.session.remove()


def deliveries(app) -> list[Delivery]:
    with app.app_context():
        rows = db.session.scalars(select(Delivery).order_by(Delivery.id)).all()
        db.session.expunge_all()
        db.session.remove()
    return rows


def test_each_change_is_delivered_signed_and_a_500_is_retried(
    tmp_path, make_app, signer, receiver, caplog
):
    caplog.set_level(logging.INFO)
    runs = make_runs(tmp_path, make_app, signer, receiver, webhook_backoff_s=0.2)
    try:
        runs.run()
        runs.say["eu-west"] = lambda region, prompt: REFUSAL
        runs.run()
        changes = runs.changes()
        assert len(changes) == len(QUESTIONS)
        receiver.script.append(500)  # the first request fails once
        wait_until(
            lambda: (
                deliver_due(runs.app) is not None
                and all(d.status == "delivered" for d in deliveries(runs.app))
            ),
            timeout=30,
            interval=0.1,
            what="every delivery to be delivered",
        )
        assert all(r["verified"] for r in receiver.requests)
        assert [r["status"] for r in receiver.requests].count(500) == 1
        got = receiver.delivered()
        assert sorted(d["data"]["id"] for d in got) == sorted(c["id"] for c in changes)
        assert all(d["type"] == "answer.changed" for d in got)
        assert got[0]["data"]["kind"] == "class" and "previous_job_id" in got[0]["data"]
        rows = deliveries(runs.app)
        retried = [d for d in rows if d.attempts == 2]
        assert len(retried) == 1 and [a["status_code"] for a in retried[0].history] == [500, 200]
        ids = {r["headers"]["webhook-id"] for r in receiver.requests}
        assert ids == {d.message_id for d in rows}  # a retry keeps its message id
        assert all(r["path"] == f"/hooks/beacon?{QUERY}" for r in receiver.requests)
        pages = [admin_page(runs, p) for p in ("/webhooks", "/schedules")]
        assert "/hooks/beacon" in pages[0] and "answered 500" in pages[0]
        for text in [*pages, *(r.getMessage() for r in caplog.records)]:
            assert "s3cret" not in text and QUERY not in text
    finally:
        runs.close()


def test_a_receiver_that_never_answers_is_given_up_on(tmp_path, make_app, signer, receiver):
    runs = make_runs(
        tmp_path,
        make_app,
        signer,
        receiver,
        webhook_timeout_s=0.5,
        webhook_max_attempts=2,
        webhook_backoff_s=0.1,
    )
    try:
        runs.run(questions=QUESTIONS[:1])
        runs.say["us-east"] = lambda region, prompt: REFUSAL
        receiver.hang_when = '"kind":"class"'
        runs.run(questions=QUESTIONS[:1])
        wait_until(
            lambda: (
                deliver_due(runs.app) is not None
                and [d.status for d in deliveries(runs.app)] == ["failed"]
            ),
            timeout=30,
            interval=0.1,
            what="the delivery to be given up",
        )
        (row,) = deliveries(runs.app)
        assert row.attempts == 2 and row.last_error == "no answer within 0.5 s"
        assert [a["status_code"] for a in row.history] == [None, None]
        html = admin_page(runs, "/webhooks")
        assert 'data-status="failed"' in html and "no answer within 0.5 s" in html
    finally:
        runs.close()


def test_deliveries_page_is_for_the_admin_only(tmp_path, make_app, signer, receiver):
    runs = make_runs(tmp_path, make_app, signer, receiver)
    try:
        response = runs.client.get("/webhooks")
        assert response.status_code == 303 and "/login" in response.headers["Location"]
    finally:
        runs.close()
