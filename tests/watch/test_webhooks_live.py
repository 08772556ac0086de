"""A webhook receiver that hangs holds up neither the jobs nor the next change's delivery: a
real `flask beacon worker` process (gevent, its watcher's delivery pool) against loopback
regions and a receiver that keeps the first change's request open."""

from __future__ import annotations

import pytest

from portal.db import db
from portal.watch.models import Delivery
from tests.support.apps import spec_3x3
from tests.support.live_server import wait_until
from tests.support.watching import REFUSAL, new_secret, substantive
from tests.support.webhook_receiver import Receiver
from tests.support.workers import REGIONS, Engine, submit, wait_for_job

pytestmark = pytest.mark.live


def test_a_hanging_receiver_blocks_neither_jobs_nor_the_next_change(
    tmp_path, database_url, make_app, signer, monkeypatch
):
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    receiver = Receiver(secret).start()
    engine = Engine(tmp_path, database_url)
    say = dict.fromkeys(REGIONS, substantive)
    try:
        providers = {
            r: engine.provider(r, responder=lambda m, p, r=r: say[r](r, p)) for r in REGIONS
        }
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        config.write_text(
            config.read_text("utf-8")
            + f'\n[watch]\nwebhook_url = "{receiver.url}?key=abc123"\n'
            + 'webhook_secret_env = "HOOK_SECRET"\nwebhook_timeout_s = 60\n'
            + "webhook_backoff_s = 0.5\n",
            "utf-8",
        )
        app = make_app(BEACON_CONFIG=str(config))
        client = app.test_client()
        engine.worker(config, HOOK_SECRET=secret, BEACON_SEMANTIC="0")

        def run(n: int) -> None:
            spec = spec_3x3(
                id=f"run-{n}",
                questions=["identity_basic"],
                metadata={"models": ["llama3.2-1b"], "nonce": f"hang-{n}"},
            )
            job = wait_for_job(client, submit(client, signer, spec), engine=engine)
            assert job["status"] == "completed"

        run(1)
        receiver.hang_when = '"job_id":"run-2"'  # the first change's request never answers
        say["asia-pacific"] = lambda region, prompt: REFUSAL
        run(2)
        wait_until(lambda: receiver.requests, 30, what="the first delivery to reach the receiver")
        say["us-east"] = lambda region, prompt: REFUSAL
        run(3)  # the job runs and ends while the first delivery hangs
        wait_until(
            lambda: [d for d in receiver.delivered() if d["data"]["job_id"] == "run-3"],
            30,
            what="the next change to be delivered",
        )
        with app.app_context():
            first = db.session.query(Delivery).order_by(Delivery.id).first()
            assert first.status == "pending" and first.attempts == 0  # still on its first try
            db.session.remove()
        receiver.release.set()  # the receiver drops the held request; the retry gets a 200
        wait_until(
            lambda: {d["data"]["job_id"] for d in receiver.delivered()} == {"run-2", "run-3"},
            30,
            what="the first change to be delivered on its retry",
        )
        assert all(r["verified"] for r in receiver.requests)
        assert "abc123" not in engine.logs()
    finally:
        engine.close()
        receiver.stop()
