#!/usr/bin/env python
"""Measures what the pool size buys against providers that answer in seconds: one
`flask --app wsgi beacon worker` process per pool size (`BEACON_MAX_CONCURRENCY`), one job per
provider latency, and per run the answers/s against the ideal (pool / latency), the worker's CPU
and RSS, and (on PostgreSQL) the most database connections it held.

Each job has as many executions as the pool has slots (models x regions, every region served by
one loopback provider, tests/support/loopback.py), each asking `--seconds / latency` questions
in order, so every slot is busy from the first call to the last: its ideal wall time is
`--seconds`. The sizing table in docs/deploy.md comes from this script.

    .venv/bin/python scripts/bench_pool.py                                   # SQLite
    .venv/bin/python scripts/bench_pool.py --database postgresql://postgres@127.0.0.1:5432/bench
    .venv/bin/python scripts/bench_pool.py --pools 4 32 --latencies 0.5 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from portal.settings import database_url as sqlalchemy_url  # noqa: E402
from portal.status import JOB_ENDED  # noqa: E402
from tests.support.apps import Signer, build_app, reset_postgres  # noqa: E402
from tests.support.live_server import upgrade_database, wait_until  # noqa: E402
from tests.support.loopback import LoopbackProvider  # noqa: E402
from tests.support.specs import job_spec  # noqa: E402
from tests.support.workers import WorkerProcess, clean_env  # noqa: E402

APP_NAME = "beacon-bench-pool-worker"  # libpq's PGAPPNAME: pg_stat_activity names the worker
TICK_S = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT_S = 600.0


def grid(pool: int) -> tuple[int, int]:
    """Returns (models, regions) with models x regions == pool, regions at most 10."""
    regions = max(r for r in range(1, 11) if pool % r == 0)
    if pool // regions > 10:
        raise SystemExit(f"pool {pool} is not a product of two numbers up to 10")
    return pool // regions, regions


def write_config(path: Path, base_url: str, latency_s: float) -> Path:
    """Writes 10 regions (all one loopback provider) and 10 models; the pool comes from the
    environment (BEACON_MAX_CONCURRENCY)."""
    lines = [
        "[execution]",
        f"call_timeout_s = {max(30, latency_s * 10)}",
        f"job_timeout_s = {int(RUN_TIMEOUT_S * 2)}",
        "lease_s = 30",
        "",
        "[intake]",
        'rate_limit = ""',
    ]
    for i in range(10):
        lines += ["", f"[regions.region-{i}]", f'name = "Region {i}"', 'provider = "openai"']
        lines.append(f'base_url = "{base_url}"')
    for i in range(10):
        lines += ["", f'[models."model-{i}"]', f'name = "Model {i}"']
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def cpu_s(pid: int) -> float:
    """Returns the process's user + system CPU seconds so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def memory_mb(pid: int) -> dict[str, float]:
    """Returns the process's resident set now (rss) and at its peak (hwm), in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values["rss" if name == "VmRSS" else "hwm"] = int(value.split()[0]) / 1024
    return values


def wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Waits until the worker has spent no CPU for half a second (its comparison is done)."""

    def idle():
        before = cpu_s(pid)
        time.sleep(0.5)
        return cpu_s(pid) - before < 0.02

    wait_until(idle, timeout, interval=0, what="the worker to go idle")


class Run:
    """One job through one worker: submits it, samples the database until it ends."""

    def __init__(self, app, db, signer: Signer, worker: WorkerProcess, postgres: bool):
        self.app, self.db, self.signer, self.worker = app, db, signer, worker
        self.postgres = postgres

    def connections(self, conn) -> int:
        if not self.postgres:
            return 0
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
        return conn.execute(text(query), {"name": APP_NAME}).scalar_one()

    def job(self, pool: int, latency_s: float, seconds: float) -> dict:
        models, regions = grid(pool)
        count = max(1, round(seconds / latency_s))
        questions = [
            f"Pool {pool}, {latency_s} s, question {q}: {q} plus {q}?" for q in range(count)
        ]
        spec = job_spec(
            [f"model-{i}" for i in range(models)],
            [f"region-{i}" for i in range(regions)],
            questions,
            name="bench-pool",
        )
        pid = self.worker.process.pid
        cpu_before = cpu_s(pid)
        started = time.monotonic()
        response = self.app.test_client().post(
            "/api/v1/jobs", data=self.signer.body(spec), content_type="application/json"
        )
        assert response.status_code == 202, response.json
        job_id = response.json["job"]["id"]
        peak = 0
        with self.db.connect() as conn:
            while True:
                status = conn.execute(
                    text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}
                ).scalar_one()
                peak = max(peak, self.connections(conn))
                conn.commit()
                if status in JOB_ENDED or time.monotonic() - started > RUN_TIMEOUT_S:
                    break
                time.sleep(0.1)
            wall = time.monotonic() - started
            completed = conn.execute(
                text(
                    "SELECT count(*) FROM answers a JOIN executions e ON a.execution_id = e.id "
                    "WHERE e.job_id = :id AND a.status = 'completed'"
                ),
                {"id": job_id},
            ).scalar_one()
        cpu = cpu_s(pid) - cpu_before
        answers = pool * len(questions)
        ideal = len(questions) * latency_s
        return {
            "latency_s": latency_s,
            "pool": pool,
            "answers": answers,
            "status": status,
            "completed": completed,
            "wall_s": round(wall, 2),
            "ideal_s": round(ideal, 2),
            "answers_per_s": round(completed / wall, 1),
            "ideal_per_s": round(pool / latency_s, 1),
            "efficiency": round(ideal / wall, 2),
            "cpu_s": round(cpu, 2),
            "cpu_ms_per_answer": round(cpu * 1000 / max(1, completed), 2),
            **{f"{k}_mb": round(v) for k, v in memory_mb(pid).items()},
            "db_connections": peak,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="PostgreSQL URL (emptied); default: a new SQLite file")
    parser.add_argument("--pools", type=int, nargs="+", default=[4, 16, 32, 64, 100])
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.5, 2.0])
    parser.add_argument("--seconds", type=float, default=10.0, help="ideal wall time per job")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    url = args.database or f"sqlite:///{workdir / 'bench.sqlite3'}"
    postgres = url.startswith("postgres")
    if postgres:
        reset_postgres(url)
    env = clean_env(DATABASE_URL=url, BEACON_SEMANTIC="0", PGAPPNAME=APP_NAME)
    upgrade_database(env, workdir / "upgrade.log")
    signer = Signer()
    provider = LoopbackProvider(label="bench").start()
    config = write_config(workdir / "beacon.toml", provider.base_url_openai, max(args.latencies))
    env["BEACON_CONFIG"] = str(config)
    app = build_app(workdir, url, signer, create_tables=False, BEACON_CONFIG=str(config))
    db = create_engine(sqlalchemy_url(url, "."))
    print(f"# {'PostgreSQL' if postgres else 'SQLite'}, load at start {os.getloadavg()}")
    results = []
    try:
        for pool in args.pools:
            worker = WorkerProcess(
                {**env, "BEACON_MAX_CONCURRENCY": str(pool)}, workdir / f"worker-{pool}.log"
            )
            try:
                worker.wait_ready()
                run = Run(app, db, signer, worker, postgres)
                for latency in args.latencies:
                    provider.latency_s = latency
                    results.append(run.job(pool, latency, args.seconds))
                    print(json.dumps(results[-1]), flush=True)
                    wait_idle(worker.process.pid)
            finally:
                worker.stop(timeout=30)
    finally:
        provider.stop()
        db.dispose()
    print(f"# load at end {os.getloadavg()}")
    print(table(results))
    return 0 if all(r["completed"] == r["answers"] for r in results) else 1


def table(results: list[dict]) -> str:
    """Returns the results as a Markdown table, sorted by latency then pool."""
    head = (
        "| latency | pool | answers | wall | ideal | answers/s | ideal/s | efficiency "
        "| worker CPU/answer | worker RSS peak | DB connections |"
    )
    rows = [head, "|" + "---|" * 11]
    for r in sorted(results, key=lambda r: (r["latency_s"], r["pool"])):
        rows.append(
            f"| {r['latency_s']:g} s | {r['pool']} | {r['answers']} | {r['wall_s']:.1f} s "
            f"| {r['ideal_s']:.1f} s | {r['answers_per_s']:.1f} | {r['ideal_per_s']:.1f} "
            f"| {r['efficiency']:.2f} | {r['cpu_ms_per_answer']:.1f} ms | {r['hwm_mb']} MB "
            f"| {r['db_connections'] or '-'} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
