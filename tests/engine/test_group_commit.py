"""Group commits: the writer stores the answers that end together in one transaction, and a
worker killed with a batch unwritten loses only those answers, which are asked once more and
never beyond max_attempts (docs/reliability.md, "Group commits")."""

from __future__ import annotations

import json
import sqlite3
import time

import gevent
import pytest
from sqlalchemy import create_engine, event, select, text, update

from portal import providers
from portal.db import db
from portal.engine import answer_writes, pool
from portal.engine.writer import Writer
from portal.intake import submit as intake
from portal.models import Answer, Execution
from portal.settings import current
from portal.status import RunStatus
from portal.times import utcnow
from tests.support.apps import spec_3x3
from tests.support.loopback import LoopbackProvider
from tests.support.workers import (
    PROVIDER_MODEL,
    REGIONS,
    Engine,
    get_job,
    submit,
    wait_for_job,
    wait_until,
    write_config,
)

OWNER = "group-commit-test"


@pytest.fixture
def answered(make_app, tmp_path, signer):
    """A job whose three executions (one per region) are leased to OWNER, each with its first
    answer asked of a real loopback provider: the app and, per execution, the AfterCall that
    stores that answer and starts the next one."""
    served = {region: LoopbackProvider(label=region).start() for region in REGIONS}
    try:
        config = write_config(
            tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in served.items()}
        )
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        with app.app_context():
            spec = spec_3x3(metadata={"models": ["llama3.2-1b"]})
            job, _ = intake.submit_jobspec(json.dumps(signer.sign(spec)), intake.intake_context())
            config = current().config
            writes = []
            for region in REGIONS:
                [execution_id] = pool.claim(region, 1, OWNER, config.execution.lease_s)
                db.session.commit()
                first, following = db.session.scalars(
                    select(Answer.id)
                    .where(Answer.execution_id == execution_id)
                    .order_by(Answer.question_index)
                    .limit(2)
                ).all()
                start = answer_writes.AfterCall(execution_id, job.id, next_id=first)
                answer_writes.write(db.session, OWNER, 30, [start], utcnow())
                db.session.commit()
                execution = db.session.get(Execution, execution_id)
                model = config.models[execution.model_id]
                result = providers.call(
                    config.regions[region], model, start.next_prompt, timeout_s=10
                )
                values = answer_writes.completed_values(result, start.next_prompt)
                writes.append(
                    answer_writes.AfterCall(execution_id, job.id, first, values, following)
                )
            db.session.remove()
        yield app, writes
    finally:
        for provider in served.values():
            provider.stop()


def commits_during(app, action) -> int:
    """Runs `action` and returns how many transactions the app's engine committed meanwhile."""
    seen = []
    with app.app_context():
        engine = db.engine
    listener = lambda _conn: seen.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        action()
    finally:
        event.remove(engine, "commit", listener)
    return len(seen)


def write_together(writer: Writer, writes) -> list[gevent.Greenlet]:
    """Hands every write to the writer from its own greenlet, as executions do, and waits."""
    greenlets = [gevent.spawn(writer.write, w) for w in writes]
    gevent.joinall(greenlets, timeout=30)
    return greenlets


def test_answers_ending_together_are_stored_and_the_next_started_in_one_commit(answered):
    app, writes = answered
    writer = Writer(app, OWNER, 30).start()
    try:
        commits = commits_during(app, lambda: write_together(writer, writes))
    finally:
        writer.stop()
    assert commits == 1  # three executions' stores and starts, one transaction
    assert all(w.owned and w.stored and w.next_prompt for w in writes)
    with app.app_context():
        for w in writes:
            stored = db.session.get(Answer, w.answer_id)
            assert stored.status == RunStatus.COMPLETED and stored.output == w.values["output"]
            started = db.session.get(Answer, w.next_id)
            assert (started.status, started.attempts) == (RunStatus.RUNNING, 1)
            assert started.prompt == w.next_prompt


def test_a_batch_writes_nothing_for_an_execution_another_worker_took(answered):
    app, writes = answered
    taken = writes[1]
    with app.app_context():
        db.session.execute(
            update(Execution).where(Execution.id == taken.execution_id).values(lease_owner="other")
        )
        db.session.commit()
    writer = Writer(app, OWNER, 30).start()
    try:
        commits = commits_during(app, lambda: write_together(writer, writes))
    finally:
        writer.stop()
    assert commits == 1
    assert [w.owned for w in writes] == [True, False, True]
    assert taken.next_prompt is None and not taken.stored
    with app.app_context():
        left = db.session.get(Answer, taken.answer_id)
        assert (left.status, left.output) == (RunStatus.RUNNING, None)  # its new owner decides
        assert db.session.get(Answer, taken.next_id).status == RunStatus.QUEUED


def test_an_answer_that_ended_meanwhile_keeps_its_end_and_the_others_are_stored(answered):
    app, writes = answered
    ended = writes[2]
    with app.app_context():
        db.session.execute(
            update(Answer)
            .where(Answer.id == ended.answer_id)
            .values(status=RunStatus.CANCELLED, error="cancelled while the call was in flight")
        )
        db.session.commit()
    writer = Writer(app, OWNER, 30).start()
    try:
        commits = commits_during(app, lambda: write_together(writer, writes))
    finally:
        writer.stop()
    assert commits == 1
    assert [w.stored for w in writes] == [True, True, False]
    with app.app_context():
        kept = db.session.get(Answer, ended.answer_id)
        assert (kept.status, kept.output) == (RunStatus.CANCELLED, None)
        for w in writes[:2]:
            assert db.session.get(Answer, w.answer_id).output == w.values["output"]


def test_a_write_that_cannot_be_stored_fails_alone_and_the_others_commit(answered):
    app, writes = answered
    refused = writes[0]
    refused.values = {**refused.values, "served_by": {"not json": object()}}
    writer = Writer(app, OWNER, 30).start()
    try:
        greenlets = write_together(writer, writes)
    finally:
        writer.stop()
    assert greenlets[0].exception is not None
    assert all(g.successful() for g in greenlets[1:])
    with app.app_context():
        assert db.session.get(Answer, refused.answer_id).status == RunStatus.RUNNING
        for w in writes[1:]:
            assert db.session.get(Answer, w.answer_id).status == RunStatus.COMPLETED
            assert db.session.get(Answer, w.next_id).status == RunStatus.RUNNING


class WriteLock:
    """Holds what every write of the engine waits for: SQLite's write lock, or on PostgreSQL
    the row locks of the job's executions (each write starts by renewing their leases)."""

    def __init__(self, database_url: str, job_id: str):
        self.url, self.job_id = database_url, job_id
        self.sqlite = database_url.startswith("sqlite")

    def __enter__(self) -> WriteLock:
        if self.sqlite:
            self.conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"))
            self.conn = self.engine.connect()
            self.conn.execute(
                text("SELECT id FROM executions WHERE job_id = :job FOR UPDATE"),
                {"job": self.job_id},
            )
        return self

    def __exit__(self, *exc) -> None:
        if self.sqlite:
            self.conn.execute("ROLLBACK")
            self.conn.close()
        else:
            self.conn.rollback()
            self.conn.close()
            self.engine.dispose()


@pytest.mark.live
def test_a_worker_killed_with_a_batch_unwritten_loses_only_that_batch(
    tmp_path, database_url, make_app, signer
):
    engine = Engine(tmp_path, database_url)
    try:
        served = engine.three_providers(latency_s=0.2)
        config = engine.config(
            {r: p.base_url_openai for r, p in served.items()}, max_concurrency=9, lease_s=2
        )
        app = make_app(BEACON_CONFIG=str(config))
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3())
        first = engine.worker(config)
        wait_until(lambda: get_job(client, job_id)["counts"]["completed"] >= 6, 30, what="6")
        with WriteLock(database_url, job_id):
            locked_at = time.time()
            # Calls the providers answered while no write could commit: their outcomes sit in
            # the worker's batch, or wait for it, when the worker is killed.
            wait_until(
                lambda: any(
                    c["finished"] and c["finished"] > locked_at and c["status"] == 200
                    for p in served.values()
                    for c in list(p.calls)
                ),
                10,
                what="a call answered while the writes wait",
            )
            first.kill()
        answered_before = {
            (region, c["model"], c["prompt"])
            for region, p in served.items()
            for c in list(p.calls)
            if c["status"] == 200
        }
        before = get_job(client, job_id)
        assert before["status"] == "running"
        keys = {
            (e["region"], PROVIDER_MODEL[e["model_id"]], a["prompt"]): a["status"]
            for e in before["executions"]
            for a in e["answers"]
        }
        done_before = {key for key, status in keys.items() if status == RunStatus.COMPLETED}
        # Answered by a provider, never stored: the batch the kill left unwritten.
        lost = answered_before - done_before
        assert lost  # answered by a provider, never stored: the unwritten batch
        engine.worker(config)
        job = wait_for_job(client, job_id, timeout=60, engine=engine)
    finally:
        engine.close()

    assert job["status"] == "completed" and job["counts"]["completed"] == 27
    for execution in job["executions"]:
        served_as = PROVIDER_MODEL[execution["model_id"]]
        for answer in execution["answers"]:
            key = (execution["region"], served_as, answer["prompt"])
            calls = served[execution["region"]].count(model=served_as, prompt=answer["prompt"])
            # Every call was counted before it was made, and none beyond max_attempts.
            assert calls <= answer["attempts"] <= 3
            if key in done_before:
                assert calls == 1  # committed before the kill: never asked again
            elif key in lost:
                assert calls == 2  # the lost outcome, asked once more by the new worker
            else:
                assert 1 <= calls <= 2
            expected = f"[{execution['region']}] {served_as} answers: {answer['prompt']}"
            assert answer["output"] == expected
