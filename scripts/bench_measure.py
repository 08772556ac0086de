"""One job measured as a user sees it, and as the job itself says, for scripts/bench.py.

The user's figure: wall time from just before the submission request is sent until a poll of
`GET /api/v1/jobs/<id>` (every `poll_s`, 25 ms by default) reads `completed`; CPU of every process
of the portal (every process of gunicorn's process group: master and workers, with the children
they reaped, plus the `worker` processes' groups) over the same span.

The job's own figure, kept beside it (the harness before issue 26): the job's `submitted_at` to
its `finished_at`, and the CPU of the engine's worker processes only, over the same span.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import requests
from bench_common import JOB_TIMEOUT_S, epoch, groups_cpu_s, pid_cpu_s

from portal.status import JOB_ENDED

POLL_S = 0.025


@dataclass
class JobRun:
    """What one measured job took, on the client's clock and on the job's own timestamps."""

    job_id: str
    answers: int
    sent: float  # time.time() just before the submission request
    accepted: float  # the submission's 202 received
    seen: float  # the poll that read `completed` answered
    submitted: float  # the job's own submitted_at
    finished: float  # the job's own finished_at
    cpu_all_s: float  # every process of the portal, sent to seen
    cpu_workers_s: float  # the engine's worker processes only, sent to seen
    polls: int
    job: dict = field(repr=False, default_factory=dict)

    @property
    def wall_s(self) -> float:
        """What a user waits: submission request to `completed` read through the API."""
        return self.seen - self.sent

    @property
    def job_wall_s(self) -> float:
        """The job's own submitted_at to finished_at."""
        return self.finished - self.submitted

    @property
    def rate(self) -> float:
        """Answers per second of the user's wall time."""
        return self.answers / self.wall_s

    def cpu_ms_per_answer(self, workers_only: bool = False) -> float:
        spent = self.cpu_workers_s if workers_only else self.cpu_all_s
        return spent / self.answers * 1000


def workers_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        total += pid_cpu_s(pid)
    return total


def run_job(server, spec: dict, poll_s: float = POLL_S, timeout: float = JOB_TIMEOUT_S) -> JobRun:
    """Submits `spec`, polls the API until the job has ended, and returns what it took.

    Raises when the job ends other than `completed` or with an answer missing.
    """
    groups, workers = server.groups(), server.worker_pids()
    cpu_all, cpu_workers = groups_cpu_s(groups), workers_cpu_s(workers)
    sent = time.time()
    job_id = server.submit(spec)
    accepted = time.time()
    path = f"{server.url}/api/v1/jobs/{job_id}"
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        job = _poll(server, path)
        polls += 1
        if job is not None and job["status"] in JOB_ENDED:
            seen = time.time()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not end within {timeout:g} s: {job}")
        time.sleep(poll_s)
    cpu_all = groups_cpu_s(groups) - cpu_all
    cpu_workers = workers_cpu_s(workers) - cpu_workers
    counts = job["counts"]
    if job["status"] != "completed" or counts["completed"] != counts["total"]:
        raise RuntimeError(f"job {job_id} ended {job['status']} with {counts}")
    return JobRun(
        job_id=job_id,
        answers=counts["total"],
        sent=sent,
        accepted=accepted,
        seen=seen,
        submitted=epoch(job["submitted_at"]),
        finished=epoch(job["finished_at"]),
        cpu_all_s=cpu_all,
        cpu_workers_s=cpu_workers,
        polls=polls,
        job=job,
    )


def _poll(server, path: str) -> dict | None:
    """Returns the job from one poll, or None when the server answered an error (a database
    restarted by someone else's test, say): a user would ask again, and so does the harness."""
    try:
        response = server.session.get(path, timeout=120)
    except requests.RequestException as exc:
        print(f"  poll of {path} failed: {exc}", file=sys.stderr)
        return None
    if response.status_code >= 500:
        print(f"  poll of {path} answered {response.status_code}", file=sys.stderr)
        return None
    response.raise_for_status()
    return response.json()["job"]


def wait_for_comparison(server, job_id: str, timeout: float = 300.0) -> float:
    """Waits until the worker has cached the ended job's comparison; returns the seconds
    waited (polled every 50 ms), or -1 when it did not come within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.comparison_cached(job_id):
            return time.monotonic() - started
        time.sleep(0.05)
    return -1.0


class ComparisonWatch(threading.Thread):
    """Watches the job's row from the moment it starts until its comparison is cached, every
    20 ms; `cached_at` is then the time.time() it was first seen cached."""

    def __init__(self, server, job_id: str, timeout: float = 600.0):
        super().__init__(daemon=True)
        self.server, self.job_id, self.timeout = server, job_id, timeout
        self.cached_at: float | None = None

    def run(self) -> None:
        from sqlalchemy import create_engine, text

        from portal.settings import database_url

        engine = create_engine(database_url(self.server.database, str(self.server.workdir)))
        query = text("SELECT comparison_cache IS NOT NULL FROM jobs WHERE id = :id")
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    row = conn.execute(query, {"id": self.job_id}).first()
                if row and row[0]:
                    self.cached_at = time.time()
                    return
                time.sleep(0.02)
        finally:
            engine.dispose()
