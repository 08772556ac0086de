"""SIGTERM drains instead of killing: calls in flight finish and store their answers, the rest
goes back to the queue, and a restart asks nothing twice. Also /metrics across two workers.

Real processes throughout: the Procfile's web line (gunicorn, two gevent workers, each with a
dispatcher) on PostgreSQL, `flask beacon worker`, and loopback providers counting every call.
"""

from __future__ import annotations

import os
import signal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from portal.settings import database_url as sqlalchemy_url
from tests.support import production as prod
from tests.support.live_server import wait_until
from tests.support.loopback import LoopbackProvider
from tests.support.workers import REGIONS, Engine

pytestmark = [pytest.mark.slow, pytest.mark.live]


def answer_rows(database_url: str) -> list[tuple]:
    engine = create_engine(sqlalchemy_url(database_url, "."))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, attempts FROM answers")).all()
    engine.dispose()
    return rows


def region_env(providers: dict[str, LoopbackProvider]) -> dict[str, str]:
    return {REGIONS[r][1]: p.base_url_openai for r, p in providers.items()}


@pytest.mark.postgres
def test_sigterm_to_the_procfile_server_mid_run_asks_each_answer_once(
    tmp_path, database_url, signer
):
    database_url = prod.require_postgres(database_url)
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers(latency_s=1.0)
        # A short lease (10 s): had the drain left leases behind, they would lapse soon and the
        # restarted server would ask those answers again.
        config = prod.config(tmp_path, {r: p.base_url_openai for r, p in providers.items()})
        env = prod.web_env(database_url, config, signer)
        release = prod.release(env)
        assert release.returncode == 0, release.stdout + release.stderr
        web = prod.start(env, tmp_path / "web-1.log")
        tags = [f"drain-{i}" for i in range(15)]
        job_ids = [prod.submit(web.url, signer, prod.job_spec(tag)) for tag in tags]

        def calls():
            return sum(p.count() for p in providers.values())

        def in_flight():
            return sum(p.stats()["in_flight"] for p in providers.values())

        wait_until(lambda: calls() >= 60 and in_flight() > 0, 120, what="calls in flight")
        os.killpg(web.process.pid, signal.SIGTERM)
        web.process.wait(timeout=40)
        log = web.log()
        web.stop()
        asked_before = calls()
        assert in_flight() == 0, "a call was still open after the server exited"
        assert asked_before < 270, "everything ended before the SIGTERM; nothing was tested"
        assert "handed back" in log, log
        assert "Worker graceful timeout" not in log, log
        rows = answer_rows(database_url)
        # Every call made so far stored its answer: nothing is left running.
        assert sum(1 for status, _ in rows if status == "completed") == asked_before, log
        assert not [r for r in rows if r[0] == "running"], rows

        web = prod.start(env, tmp_path / "web-2.log")
        statuses = prod.wait_all_ended(web.url, job_ids, timeout=180)
        web.stop(timeout=30)

        assert set(statuses.values()) == {"completed"}, statuses
        counts = prod.asked_counts(providers)
        assert set(counts) == prod.expected_answers(tags)
        assert sorted(set(counts.values())) == [1], {k: n for k, n in counts.items() if n != 1}
        assert calls() == 270
        assert {attempts for _, attempts in answer_rows(database_url)} == {1}
    finally:
        engine.close()


def test_sigterm_to_a_flask_beacon_worker_hands_back_what_it_did_not_start(
    tmp_path, database_url, signer, make_app
):
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers(latency_s=1.0)
        config = prod.config(tmp_path, {r: p.base_url_openai for r, p in providers.items()})
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        client = app.test_client()
        tags = [f"worker-{i}" for i in range(4)]
        job_ids = [
            client.post(
                "/api/v1/jobs",
                data=signer.body(prod.job_spec(tag)),
                content_type="application/json",
            ).json["job"]["id"]
            for tag in tags
        ]
        first = engine.worker(config, BEACON_SEMANTIC="0")

        def calls():
            return sum(p.count() for p in providers.values())

        wait_until(lambda: calls() >= 8, 60, what="the first calls")
        first.stop(timeout=30)
        assert first.process.returncode == 0, first.log()
        assert "handed back" in first.log(), first.log()
        asked_before = calls()
        assert asked_before < 72

        engine.worker(config, BEACON_SEMANTIC="0")
        for job_id in job_ids:
            job = wait_until(
                lambda job_id=job_id: (
                    (j := client.get(f"/api/v1/jobs/{job_id}").json["job"])["status"] in prod.ENDED
                    and j
                ),
                90,
                interval=0.3,
                what=f"job {job_id}",
            )
            assert job["status"] == "completed", engine.logs()
        counts = prod.asked_counts(providers)
        assert set(counts) == prod.expected_answers(tags)
        assert set(counts.values()) == {1}
    finally:
        engine.close()


def metric_values(body: str, name: str) -> list[tuple[dict, float]]:
    """Returns (labels, value) of every sample called `name`."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.mark.postgres
def test_fifty_jobs_on_two_workers_and_metrics_counts_900_answers(tmp_path, database_url, signer):
    database_url = prod.require_postgres(database_url)
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers(latency_s=0.1)
        config = prod.config(tmp_path, {r: p.base_url_openai for r, p in providers.items()})
        env = prod.web_env(database_url, config, signer)
        assert prod.release(env).returncode == 0
        web = prod.start(env, tmp_path / "web.log")
        tags = [f"metrics-{i}" for i in range(50)]
        job_ids = [prod.submit(web.url, signer, prod.job_spec(tag)) for tag in tags]
        statuses = prod.wait_all_ended(web.url, job_ids, timeout=300)
        assert set(statuses.values()) == {"completed"}, statuses

        counts = prod.asked_counts(providers)
        assert set(counts) == prod.expected_answers(tags)
        assert set(counts.values()) == {1}

        # Several scrapes, served by either worker: the same totals every time.
        scrapes = []
        for _ in range(6):
            response = requests.get(f"{web.url}/metrics", timeout=10)
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            scrapes.append(response.text)
        for body in scrapes:
            answers = metric_values(body, "beacon_answers")
            assert sum(v for labels, v in answers if labels["status"] == "completed") == 900
            assert {labels["status"] for labels, _ in answers} == {"completed"}
            per_cell = {(labels["model"], labels["region"]): v for labels, v in answers}
            assert len(per_cell) == 9 and set(per_cell.values()) == {100}
            jobs = dict((labels["status"], v) for labels, v in metric_values(body, "beacon_jobs"))
            assert jobs["completed"] == 50 and jobs["running"] == 0
            # The call histograms are added up across both workers' files.
            calls = metric_values(body, "beacon_provider_call_seconds_count")
            assert sum(v for _, v in calls) == 900
            slots = dict(
                (labels["state"], v) for labels, v in metric_values(body, "beacon_pool_slots")
            )
            assert slots["used"] + slots["free"] == 12  # two workers, six slots each
            recoveries = metric_values(body, "beacon_lease_recoveries_total")
            assert recoveries and sum(v for _, v in recoveries) == 0
        engine_ = create_engine(sqlalchemy_url(database_url, "."))
        with engine_.connect() as conn:
            owners = set(
                conn.execute(text("SELECT DISTINCT lease_owner FROM executions")).scalars()
            )
        engine_.dispose()
        assert len({owner.split(":")[1] for owner in owners}) == 2, owners
        web.stop(timeout=30)
    finally:
        engine.close()
