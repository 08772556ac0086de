"""The fault matrix: each provider fault, a database restart and a killed worker, run for real.

Every row runs jobs submitted through the API by a `flask beacon worker` subprocess against
loopback providers on 127.0.0.1. Each row asserts what the job ends as and what the answer's
error says, and proves that nothing was lost or asked twice: every answer ended, there is one
execution per (model, region), the provider saw as many calls per (model, prompt) as the answer
records attempts, a completed answer was answered once and stored as the provider sent it, and
nothing was asked after its job ended. docs/reliability.md tabulates the matrix.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from portal.db import db
from portal.models import Answer, Execution, Job
from portal.status import FINISHED
from tests.support.apps import Signer, build_app, pg_test_url, reset_postgres, spec_3x3
from tests.support.loopback import LoopbackProvider
from tests.support.workers import (
    ENDED,
    PROVIDER_MODEL,
    REGIONS,
    Engine,
    WorkerProcess,
    get_job,
    submit,
    wait_for_job,
    wait_until,
)

pytestmark = [pytest.mark.live, pytest.mark.db]

FINAL = FINISHED
GEOGRAPHY = "What is the capital city of Australia?"
MODEL, SERVED = "echo", "echo-1"
CALL_TIMEOUT_S = 1.5
MAX_ATTEMPTS = 3
# Reading the whole 10 MB body costs a worker over 20 MB more at its peak (the body, then its
# copy); stopping at the 4 MiB limit costs about 4 MB.
HUGE_GROWTH_LIMIT_KIB = 16 * 1024


@pytest.fixture
def engine(tmp_path, database_url):
    engine = Engine(tmp_path, database_url)
    yield engine
    engine.close()


# --- what every row proves --------------------------------------------------------------------


def calls_for(calls: list[dict], served: str, prompt: str) -> list[dict]:
    """Returns the provider's records of calls for one (model, prompt), in arrival order."""
    return [c for c in calls if c["model"] == served and c["prompt"] == prompt]


def answered(call: dict) -> bool:
    """True when the provider sent a real answer on this call (no fault, HTTP 200)."""
    return call["fault"] is None and call["status"] == 200


def check_ledger(
    job: dict, calls_by_region: dict[str, list[dict]], served: dict[str, str], answers: int
) -> list[tuple[dict, dict, list[dict]]]:
    """Asserts what holds after any fault; returns (execution, answer, its calls) per answer."""
    assert job["status"] in ENDED and job["finished_at"] is not None, job["status"]
    ended_at = datetime.fromisoformat(job["finished_at"]).timestamp()
    pairs = Counter((e["model_id"], e["region"]) for e in job["executions"])
    assert set(pairs.values()) == {1}, pairs
    ledger = []
    for execution in job["executions"]:
        assert execution["status"] in FINAL and execution["finished_at"] is not None
        model = served[execution["model_id"]]
        for answer in execution["answers"]:
            assert answer["status"] in FINAL, answer
            mine = calls_for(calls_by_region[execution["region"]], model, answer["prompt"])
            # Nothing is asked once the job has ended (the times are milliseconds on the wire).
            assert all(c["started"] <= ended_at + 0.001 for c in mine)
            if answer["status"] == "completed":
                expected = f"[{execution['region']}] {model} answers: {answer['prompt']}"
                assert answer["output"] == expected
                assert answer["output_sha256"] == hashlib.sha256(expected.encode()).hexdigest()
                assert answer["error"] is None
                assert mine and answered(mine[-1])
            else:
                assert answer["output"] is None and answer["error"]
                assert not any(answered(c) for c in mine), "a real answer was thrown away"
            ledger.append((execution, answer, mine))
    assert len(ledger) == answers == job["counts"]["total"]
    return ledger


# --- provider faults: one worker runs one job per row at once ---------------------------------


@dataclass(frozen=True)
class Row:
    """One provider fault: how it is injected and what the faulty answer ends as."""

    id: str  # also the region the row's provider serves, and the label of its answers
    job: str
    answer: str
    attempts: int
    error: tuple[str, ...] = ()
    script: tuple[str, ...] = ()
    always: str | None = None

    def inject(self, provider: LoopbackProvider) -> None:
        # Only the first question meets the fault; the second one shows the execution goes on.
        if self.script:
            provider.script(list(self.script), prompt_contains="Australia")
        if self.always:
            provider.always(self.always, prompt_contains="Australia")


TIMED_OUT = ("no complete answer from", f"within {CALL_TIMEOUT_S:g} s", "after 3 attempts")
ROWS = [
    Row("no-fault", "completed", "completed", 1),
    Row("503-twice", "completed", "completed", 3, script=("503", "503")),
    Row("429", "completed", "completed", 2, script=("429",)),
    Row("reset-once", "completed", "completed", 2, script=("reset",)),
    Row(
        "500",
        "partial",
        "failed",
        3,
        ("HTTP 500", "internal server error", "after 3 attempts"),
        always="500",
    ),
    Row(
        "reset",
        "partial",
        "failed",
        3,
        ("closed before a complete answer", "after 3 attempts"),
        always="reset",
    ),
    Row("hang", "partial", "failed", 3, TIMED_OUT, always="hang"),
    Row("drip", "partial", "failed", 3, TIMED_OUT, always="drip"),
    Row("garbage", "partial", "failed", 1, ("invalid JSON", "this is not json"), always="garbage"),
    Row("huge", "partial", "failed", 1, ("response too large", "over 4 MiB"), always="huge"),
    Row("404", "partial", "failed", 1, ("HTTP 404", "model 'echo-1' not found"), always="404"),
    Row(
        "null-content",
        "partial",
        "failed",
        1,
        ("no text at choices[0].message.content",),
        always="null-content",
    ),
]


@dataclass
class Matrix:
    jobs: dict[str, dict] = field(default_factory=dict)
    calls: dict[str, list[dict]] = field(default_factory=dict)
    asked_after_end: dict[str, int] = field(default_factory=dict)
    peak_growth_kib: int = 0
    seconds: float = 0.0
    urls: dict[str, str] = field(default_factory=dict)


def matrix_config(path: Path, base_urls: dict[str, str]) -> Path:
    """Writes a configuration with one region per row and one model."""
    lines = [
        "[execution]",
        "max_concurrency = 16",
        f"call_timeout_s = {CALL_TIMEOUT_S}",
        "job_timeout_s = 60",
        f"max_attempts = {MAX_ATTEMPTS}",
        "lease_s = 2",
    ]
    for region, url in base_urls.items():
        lines += ["", f"[regions.{region}]", f'name = "{region}"', 'provider = "openai"']
        lines.append(f'base_url = "{url}"')
    lines += ["", f"[models.{MODEL}]", 'name = "Echo"', f'provider_model = "{SERVED}"']
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def row_spec(region: str, model: str = MODEL, questions=("geography_basic", "identity_basic")):
    return spec_3x3(
        constraints={"regions": [region], "min_regions": 1, "min_success_rate": 0.5},
        metadata={"models": [model]},
        questions=list(questions),
    )


def peak_rss_kib(worker: WorkerProcess) -> int:
    status = Path(f"/proc/{worker.process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


def comparison_cached(app, job_id: str) -> bool:
    with app.app_context():
        cached = db.session.scalar(select(Job.comparison_cache).where(Job.id == job_id))
        db.session.rollback()
    return cached is not None


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Runs one job per row on one worker and records how each ended and what was asked."""
    tmp = tmp_path_factory.mktemp("matrix")
    url = pg_test_url()
    if url is None:
        url = f"sqlite:///{tmp / 'beacon.sqlite3'}"
    else:
        reset_postgres(url)
    engine = Engine(tmp, url)
    signer = Signer()
    app = None
    try:
        providers = {row.id: engine.provider(row.id) for row in ROWS}
        urls = {row_id: p.base_url_openai for row_id, p in providers.items()}
        config = matrix_config(tmp / "beacon.toml", urls)
        app = build_app(tmp, url, signer, BEACON_CONFIG=str(config))
        client = app.test_client()
        worker = engine.worker(config)

        # The fault-free row runs first, and the worker computes its comparison when it ends
        # (loading the embedding model, when installed): the memory baseline includes both.
        result = Matrix(urls=urls)
        first, *rest = ROWS
        job_ids = {first.id: submit(client, signer, row_spec(first.id))}
        wait_for_job(client, job_ids[first.id], timeout=30, engine=engine)
        wait_until(lambda: comparison_cached(app, job_ids[first.id]), 60, what="the comparison")
        baseline = peak_rss_kib(worker)
        started = time.monotonic()
        for row in rest:
            row.inject(providers[row.id])
            job_ids[row.id] = submit(client, signer, row_spec(row.id))
        for row in ROWS:
            result.jobs[row.id] = wait_for_job(client, job_ids[row.id], timeout=60, engine=engine)
        result.seconds = time.monotonic() - started
        result.peak_growth_kib = peak_rss_kib(worker) - baseline
        seen = {row_id: p.count() for row_id, p in providers.items()}
        time.sleep(1.5)  # three claim passes and a deadline sweep
        for row_id, provider in providers.items():
            result.asked_after_end[row_id] = provider.count() - seen[row_id]
            result.calls[row_id] = [dict(c) for c in provider.calls]
    finally:
        # Stopped before the row tests run: the next test may reuse the PostgreSQL schema.
        engine.close()
        if app is not None:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
    return result


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_provider_fault(matrix, row):
    job = matrix.jobs[row.id]
    calls = matrix.calls[row.id]

    assert job["status"] == row.job
    ledger = check_ledger(job, {row.id: calls}, {MODEL: SERVED}, answers=2)
    (_, faulty, faulty_calls), (_, other, other_calls) = ledger
    assert faulty["prompt"] == GEOGRAPHY
    assert (faulty["status"], faulty["attempts"]) == (row.answer, row.attempts)
    # Every call the provider saw is an attempt the answer records, and no more.
    assert len(faulty_calls) == faulty["attempts"]
    if row.answer == "completed":
        assert [c["fault"] for c in faulty_calls] == [*row.script, None]
        assert [answered(c) for c in faulty_calls] == [False] * (row.attempts - 1) + [True]
    else:
        assert [c["fault"] for c in faulty_calls] == [row.always] * row.attempts
        assert faulty["error"].startswith(f"{row.id}: "), faulty["error"]
        assert matrix.urls[row.id] in faulty["error"]
        for fragment in row.error:
            assert fragment in faulty["error"], (fragment, faulty["error"])
        assert faulty["classification"] == "technical_failure"
        assert faulty["finished_at"] is not None
    # The fault stays with its answer: the next question is asked once and answered.
    assert (other["status"], other["attempts"], len(other_calls)) == ("completed", 1, 1)
    assert matrix.asked_after_end[row.id] == 0
    assert job["meets_constraints"] is (row.job == "completed")


def test_retry_after_is_honoured(matrix):
    first, second = calls_for(matrix.calls["429"], SERVED, GEOGRAPHY)
    # The provider asked for 1 s; the portal's own first backoff would be 0.5 s.
    assert first["status"] == 429 and second["status"] == 200
    assert second["started"] - first["finished"] >= 0.95


def test_hang_and_drip_fail_at_the_call_timeout(matrix):
    for row_id in ("hang", "drip"):
        answer = matrix.jobs[row_id]["executions"][0]["answers"][0]
        # The last attempt's own duration: the call timeout, although the drip kept sending.
        assert CALL_TIMEOUT_S * 1000 - 100 <= answer["latency_ms"] <= CALL_TIMEOUT_S * 1000 + 1500
    # Three timeouts and two backoffs, then the last question: far from stuck.
    assert matrix.seconds < 30


def test_huge_body_is_not_read_whole(matrix):
    answer = matrix.jobs["huge"]["executions"][0]["answers"][0]
    assert answer["status"] == "failed" and answer["latency_ms"] < 5000
    assert matrix.peak_growth_kib < HUGE_GROWTH_LIMIT_KIB, matrix.peak_growth_kib


# --- a worker killed while it waits to retry --------------------------------------------------


def test_worker_killed_during_a_retry_backoff(engine, make_app, signer):
    provider = engine.provider("us-east")
    provider.script(["429"], prompt_contains="Australia")
    config = engine.config(dict.fromkeys(REGIONS, provider.base_url_openai), lease_s=2)
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    served = PROVIDER_MODEL["llama3.2-1b"]
    spec = row_spec("us-east", "llama3.2-1b", ("identity_basic", "geography_basic", "math_basic"))
    job_id = submit(client, signer, spec)
    first = engine.worker(config)

    def backing_off():
        with app.app_context():
            error = db.session.scalar(select(Answer.error).where(Answer.prompt == GEOGRAPHY))
            db.session.rollback()
            return error is not None and "trying again" in error

    wait_until(backing_off, 20, interval=0.02, what="the 429 backoff")
    first.kill()
    killed_at = time.time()

    with app.app_context():
        answer = db.session.scalar(select(Answer).where(Answer.prompt == GEOGRAPHY))
        execution = db.session.get(Execution, answer.execution_id)
        assert (answer.status, answer.attempts) == ("running", 1)
        assert answer.error.startswith("attempt 1 failed, trying again: us-east: HTTP 429")
        assert execution.status == "running"
        assert f":{first.process.pid}:" in execution.lease_owner
    assert provider.count(model=served, prompt=GEOGRAPHY) == 1
    second = engine.worker(config)

    job = wait_for_job(client, job_id, timeout=30, engine=engine)

    assert job["status"] == "completed"
    ledger = check_ledger(job, {"us-east": provider.calls}, PROVIDER_MODEL, answers=3)
    for _, answer, calls in ledger:
        assert len(calls) == answer["attempts"]
    identity, geography, math = (a for _, a, _ in ledger)
    assert identity["attempts"] == math["attempts"] == 1
    assert geography["attempts"] == 2
    retried = calls_for(provider.calls, served, GEOGRAPHY)[-1]
    assert retried["started"] > killed_at and answered(retried)
    with app.app_context():
        owner = db.session.get(Execution, job["executions"][0]["id"]).lease_owner
    assert f":{second.process.pid}:" in owner


# --- PostgreSQL restarted mid-job -------------------------------------------------------------


def postgres_cluster(url: str) -> tuple[str, str] | None:
    """Returns (version, name) of the local cluster serving `url`, or None if it is not local."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which("pg_lsclusters"):
        return None
    if os.geteuid() != 0:
        return None
    listed = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    )
    for line in listed.stdout.splitlines():
        version, name, port, *_ = line.split()
        if int(port) == (parts.port or 5432):
            return version, name
    return None


def postmaster_started(url: str) -> float:
    """When the PostgreSQL server at `url` last started, as a Unix time."""
    from sqlalchemy import create_engine, text

    from portal.settings import database_url

    engine = create_engine(database_url(url, "."))
    try:
        with engine.connect() as conn:
            started = conn.scalar(text("SELECT extract(epoch FROM pg_postmaster_start_time())"))
    finally:
        engine.dispose()
    return float(started)


def pg_ctlcluster(cluster: tuple[str, str], action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, action],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.postgres
@pytest.mark.serial
def test_database_restart_mid_job_loses_nothing(engine, make_app, signer, database_url):
    url = pg_test_url()
    if url is None:
        pytest.skip(
            "SKIPPED LOUDLY: restarting the database mid-job needs PostgreSQL "
            "(TEST_DATABASE_URL); SQLite has no server to restart"
        )
    cluster = postgres_cluster(url)
    if cluster is None:
        pytest.skip(
            "SKIPPED LOUDLY: TEST_DATABASE_URL is not a local cluster this user may restart"
        )
    providers = engine.three_providers(latency_s=0.3)
    config = engine.config(
        {r: p.base_url_openai for r, p in providers.items()}, max_concurrency=3, lease_s=2
    )
    app = make_app(BEACON_CONFIG=str(config))
    client = app.test_client()
    questions = ["identity_basic", "math_basic", "geography_basic", "greatest_invention"]
    job_id = submit(client, signer, spec_3x3(questions=questions))
    worker = engine.worker(config)
    wait_until(lambda: get_job(client, job_id)["counts"]["completed"] >= 6, 30, what="6 answers")

    before = get_job(client, job_id)["counts"]
    went_down = time.time()
    try:
        restarted = pg_ctlcluster(cluster, "restart")
    finally:
        if pg_ctlcluster(cluster, "status").returncode != 0:
            pg_ctlcluster(cluster, "start")
    came_up = time.time()
    assert restarted.returncode == 0, restarted.stderr

    job = wait_for_job(client, job_id, timeout=60, engine=engine)

    assert 6 <= before["completed"] < before["total"] == 36
    assert job["status"] == "completed", engine.logs()
    assert worker.process.poll() is None, "the worker died with the database"
    # The server really went away mid-job: every connection the worker held was cut. Whether
    # the worker also logs an OperationalError depends on whether it touched the database in
    # the second the server was down (the pool's pre-ping reconnects quietly afterwards), so
    # the proof is the server's own start time, not the worker's log.
    assert postmaster_started(url) >= went_down - 1
    calls = {region: p.calls for region, p in providers.items()}
    ledger = check_ledger(job, calls, PROVIDER_MODEL, answers=36)
    for _, answer, mine in ledger:
        # Asked once; or once more when the first call's outcome could not be stored because
        # the database was down; every call the provider saw is a recorded attempt.
        assert 1 <= len(mine) <= 2, answer
        assert len(mine) <= answer["attempts"] <= len(mine) + 1, answer
        if len(mine) == 2:
            assert mine[0]["finished"] >= went_down - 1 and mine[0]["started"] <= came_up, mine
