#!/usr/bin/env python
"""Benchmarks the portal through the real engine and the real app, and prints a results table.

Loopback providers (`tests.support.loopback.LoopbackProvider`, real HTTP on 127.0.0.1) stand in for
the regions; the portal runs under gunicorn started from the Procfile's `web` line (one worker,
bound to 127.0.0.1) after the Procfile's `release` line has migrated a fresh database. Jobs are
signed with a key generated for the run and trusted through BEACON_TRUSTED_KEYS.

Sections (`--only NAME`, repeatable): efficiency, overhead, latency, memory, pool, calls.
What each figure means and the results on the reference machine: docs/benchmarks.md.

    .venv/bin/python scripts/bench.py                     # everything, SQLite and PostgreSQL
    .venv/bin/python scripts/bench.py --quick --db sqlite --only overhead
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import dataclasses
import io
import json
import math
import os
import platform
import pstats
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench_calls  # noqa: E402  (beside this script)
import bench_promptfoo  # noqa: E402  (beside this script)
import requests  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from portal.intake import signing  # noqa: E402
from portal.settings import ENV_NAMES, database_url  # noqa: E402
from portal.status import JOB_ENDED  # noqa: E402
from tests.support.loopback import LoopbackProvider  # noqa: E402
from tests.support.specs import job_spec  # noqa: E402
from tests.support.workers import clean_env  # noqa: E402

BIN = Path(sys.executable).parent
SECTIONS = ("efficiency", "overhead", "latency", "memory", "pool", "promptfoo", "calls")
CALLS = 3000
ENDED = JOB_ENDED
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LATENCY_S = 0.050
POOL = 9
SMALL_POOL = 4
REGION_IDS = [f"region-{i:02d}" for i in range(1, 11)]
MODEL_IDS = [f"model-{i:02d}" for i in range(1, 11)]
START_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 300.0
COMPARISON_WAIT_S = 120.0


@dataclass(frozen=True)
class Sizes:
    """How big and how often: the default run, or --quick."""

    runs: int
    efficiency_questions: int
    overhead_questions: int
    pool_questions: int
    big_job: tuple[int, int, int]
    small_requests: int
    big_requests: int


FULL = Sizes(
    runs=3,
    efficiency_questions=100,
    overhead_questions=100,
    pool_questions=20,
    big_job=(10, 10, 10),
    small_requests=100,
    big_requests=30,
)
QUICK = Sizes(
    runs=1,
    efficiency_questions=20,
    overhead_questions=20,
    pool_questions=5,
    big_job=(5, 5, 4),
    small_requests=10,
    big_requests=5,
)


@dataclass
class Figure:
    """One row of the table: the values of every run, and the target they are judged by."""

    key: str
    label: str
    db: str
    unit: str
    values: list[float] = field(default_factory=list)
    target: str = ""
    meets: Callable[[float], bool] | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def result(self) -> str:
        if self.meets is None:
            return ""
        return "met" if self.meets(self.median) else "MISSED"

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "db": self.db,
            "unit": self.unit,
            "values": self.values,
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
            "target": self.target or None,
            "result": self.result or None,
            "note": self.note or None,
        }


# --- the machine -------------------------------------------------------------------------------


def describe_machine(postgres_url: str | None) -> dict:
    """Returns the CPU, cores, memory and software versions the figures were taken on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    machine = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": None,
    }
    for name in ("gunicorn", "gevent", "flask", "sqlalchemy"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            machine[name] = version(name)
    if postgres_url:
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(postgres_url, connect_timeout=5) as conn:
                machine["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    return machine


# --- databases ---------------------------------------------------------------------------------


class Databases:
    """Hands out a fresh, empty database per server: a SQLite file or a PostgreSQL database."""

    def __init__(self, kind: str, workdir: Path, postgres_url: str):
        self.kind = kind
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.pg_name = f"beacon_bench_{os.getpid()}"
        self.count = 0

    def fresh(self) -> str:
        """Returns the URL of a new empty database."""
        self.count += 1
        if self.kind == "sqlite":
            return f"sqlite:///{self.workdir / f'bench-{self.count}.sqlite3'}"
        self._drop_pg()
        self._admin(f'CREATE DATABASE "{self.pg_name}"')
        base = self.postgres_url.rsplit("/", 1)[0]
        return f"{base}/{self.pg_name}"

    def close(self) -> None:
        """Drops the PostgreSQL database this run created."""
        if self.kind == "postgres":
            self._drop_pg()

    def _drop_pg(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)


# --- configuration and jobs --------------------------------------------------------------------


def write_config(path: Path, n_models: int, base_urls: list[str], pool: int) -> Path:
    """Writes a bench configuration: `n_models` models, one region per URL, no region caps."""
    lines = [
        "[execution]",
        f"max_concurrency = {pool}",
        "call_timeout_s = 30",
        f"job_timeout_s = {int(JOB_TIMEOUT_S) * 2}",
        "max_attempts = 3",
        "lease_s = 30",
        "",
        "[intake]",
        "timestamp_window_s = 0",
    ]
    for region_id, url in zip(REGION_IDS, base_urls, strict=False):
        lines += [
            "",
            f"[regions.{region_id}]",
            f'name = "Bench {region_id}"',
            'provider = "openai"',
            f'base_url = "{url}"',
        ]
    for model_id in MODEL_IDS[:n_models]:
        lines += ["", f'[models."{model_id}"]', f'name = "Bench {model_id}"']
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def prompts(n: int) -> list[str]:
    """Returns `n` literal prompts (they contain spaces, so they are never read as ids)."""
    return [f"Benchmark question {i}: what is {i} plus {i}?" for i in range(1, n + 1)]


_job_counter = 0


def make_spec(models: list[str], regions: list[str], questions: list[str]) -> dict:
    """Returns an unsigned JobSpec with an id unique to this run (the shared builder's)."""
    global _job_counter
    _job_counter += 1
    job_id = f"bench-{os.getpid()}-{int(time.time())}-{_job_counter}"
    return job_spec(models, regions, questions, job_id=job_id, name="bench")


# --- the server --------------------------------------------------------------------------------


def procfile_line(name: str) -> str:
    """Returns the command of one Procfile process line."""
    for line in (ROOT / "Procfile").read_text("utf-8").splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise SystemExit(f"the Procfile has no {name!r} line")


def procfile_argv(name: str, port: int | None = None) -> list[str]:
    """Returns a Procfile line as argv: $PORT substituted, bound to loopback, venv binaries."""
    command = procfile_line(name)
    if port is not None:
        command = command.replace("${PORT:-8000}", str(port)).replace("$PORT", str(port))
        # The benchmark listens on loopback only; everything else is the Procfile's line.
        command = command.replace("0.0.0.0:", "127.0.0.1:")
    argv = shlex.split(command)
    if (BIN / argv[0]).exists():
        argv[0] = str(BIN / argv[0])
    return argv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn as the Procfile starts it, on a fresh database, with one worker process."""

    def __init__(self, workdir: Path, database: str, config: Path | None, **env: str):
        self.workdir = workdir
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seed = signing.generate_seed()
        public = signing.public_key_b64(self.seed)
        # The harness's clean environment: no Beacon setting of this shell leaks in.
        clean = clean_env(
            DATABASE_URL=database,
            BEACON_CONFIG=str(config) if config else "",
            SECRET_KEY="bench-secret",
            BEACON_SIGNING_KEY=base64.b64encode(signing.generate_seed()).decode(),
            BEACON_TRUSTED_KEYS=json.dumps(
                [{"kid": "bench", "public_key": public, "status": "active"}]
            ),
            WEB_CONCURRENCY="1",
            PORT=str(self.port),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
        )
        clean.update(env)
        self.env = clean
        self.log_path = workdir / f"gunicorn-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()

    def start(self) -> Server:
        """Migrates with the Procfile's release line, starts the web line, waits for /health."""
        release = subprocess.run(
            procfile_argv("release"),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=120,
        )
        if release.returncode != 0:
            raise RuntimeError(
                f"release failed:\n{release.stdout.decode()}{release.stderr.decode()}"
            )
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it; closed below
        try:
            self.process = subprocess.Popen(
                procfile_argv("web", self.port),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if self.session.get(f"{self.url}/health", timeout=2).status_code == 200:
                    if self.worker_pid() is not None:
                        return self
            time.sleep(0.1)
        raise RuntimeError(f"no healthy server after {START_TIMEOUT_S:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (gunicorn stops gracefully), SIGKILL to the group if it lingers."""
        self.session.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        text_ = self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text_.splitlines()[-lines:])

    def worker_pid(self) -> int | None:
        """Returns the pid of gunicorn's one worker process."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if len(children) == 1 else None

    def worker_peak_mb(self) -> float:
        """Returns the worker's resident-set high-water mark (VmHWM) in MB."""
        status = Path(f"/proc/{self.worker_pid()}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")

    def submit(self, spec: dict) -> str:
        """Signs and submits a JobSpec; returns the job id."""
        body = json.dumps(signing.sign(spec, self.seed))
        response = self.session.post(
            f"{self.url}/api/v1/jobs",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
        return response.json()["job"]["id"]

    def wait_for(self, job_id: str, timeout: float = JOB_TIMEOUT_S, on_end=None) -> dict:
        """Waits for the job to end (polling its row, not the server); returns it from the API.

        `on_end`, when given, is called once, as soon as the job is seen ended. Then waits for
        the comparison the worker computes once a job ends (its cache filled): that work holds
        CPU, and must not be counted in the next measurement.
        """
        engine = create_engine(database_url(self.database, str(self.workdir)))
        query = text(
            "SELECT status, finished_at, comparison_cache IS NOT NULL FROM jobs WHERE id = :id"
        )
        try:
            deadline = time.monotonic() + timeout
            ended_at = None
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    row = conn.execute(query, {"id": job_id}).first()
                if row is not None and row[0] in ENDED and row[1] is not None:
                    if ended_at is None and on_end is not None:
                        on_end()
                    ended_at = ended_at or time.monotonic()
                    # A comparison that fails leaves no cache; do not wait for it forever.
                    if row[2] or time.monotonic() - ended_at > COMPARISON_WAIT_S:
                        break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"job {job_id} did not end within {timeout:g} s")
        finally:
            engine.dispose()
        response = self.session.get(f"{self.url}/api/v1/jobs/{job_id}", timeout=60)
        response.raise_for_status()
        job = response.json()["job"]
        counts = job["counts"]
        if counts["completed"] != counts["total"]:
            raise RuntimeError(f"job {job_id} ended {job['status']} with {counts}")
        return job

    def in_process_app(self):
        """Returns the same app built in this process, for server-side timings."""
        from portal import create_app

        overrides = {name: self.env.get(name, "") for name in ENV_NAMES}
        overrides["INSTANCE_PATH"] = str(self.workdir / "instance")
        return create_app(overrides)


@contextlib.contextmanager
def serving(workdir: Path, dbs: Databases, config: Path | None, **env: str) -> Iterator[Server]:
    server = Server(workdir, dbs.fresh(), config, **env)
    try:
        yield server.start()
    except Exception:
        print(f"--- gunicorn log\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()


@contextlib.contextmanager
def providers(count: int, latency_s: float) -> Iterator[list[LoopbackProvider]]:
    started = [LoopbackProvider(latency_s=latency_s, label=f"p{i}").start() for i in range(count)]
    try:
        yield started
    finally:
        for provider in started:
            provider.stop()


def max_in_flight(providers_: list[LoopbackProvider]) -> int:
    """Returns the most calls in flight at once across all providers, from their call records."""
    events = []
    for provider in providers_:
        for call in list(provider.calls):
            events.append((call["started"], 1))
            events.append((call["finished"] or math.inf, -1))
    # At equal times, an end is counted before a start, so back-to-back calls do not overlap.
    events.sort(key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def job_seconds(job: dict) -> float:
    """Returns the job's wall time: submitted_at to finished_at, from its own timestamps."""
    from datetime import datetime

    submitted = datetime.fromisoformat(job["submitted_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    return (finished - submitted).total_seconds()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- sections ----------------------------------------------------------------------------------


class Bench:
    def __init__(
        self, db: str, dbs: Databases, workdir: Path, sizes: Sizes, profile_dir: Path | None = None
    ):
        self.db = db
        self.dbs = dbs
        self.workdir = workdir
        self.sizes = sizes
        self.profile_dir = profile_dir
        self.figures: list[Figure] = []

    def figure(self, key: str, label: str, unit: str, **kwargs) -> Figure:
        fig = Figure(key=key, label=label, db=self.db, unit=unit, **kwargs)
        self.figures.append(fig)
        return fig

    def say(self, message: str) -> None:
        print(f"  [{self.db}] {message}", file=sys.stderr, flush=True)

    def efficiency_and_overhead(self, sections: set[str]) -> None:
        """Runs 3 x 3 jobs at 50 ms (efficiency) and at zero latency (overhead) on one server."""
        s = self.sizes
        models, regions = MODEL_IDS[:3], REGION_IDS[:3]
        with providers(3, LATENCY_S) as provs:
            config = write_config(
                self.workdir / f"bench-3x3-{self.db}.toml",
                3,
                [p.base_url_openai for p in provs],
                POOL,
            )
            with serving(self.workdir, self.dbs, config) as server:
                if "efficiency" in sections:
                    n = s.efficiency_questions
                    answers = 3 * 3 * n
                    ideal = answers / POOL * LATENCY_S
                    eff = self.figure(
                        "efficiency",
                        f"fan-out efficiency, 3x3x{n} at 50 ms, pool {POOL}",
                        "ratio",
                        target=">= 0.85",
                        meets=lambda v: v >= 0.85,
                        note=f"ideal {ideal:.2f} s",
                    )
                    wall = self.figure(
                        "efficiency_wall", f"wall time of that job (ideal {ideal:.2f} s)", "s"
                    )
                    peak = self.figure(
                        "pool_bound_9",
                        f"max calls in flight, pool {POOL} (9 executions)",
                        "calls",
                        target=f"<= {POOL}",
                        meets=lambda v: v <= POOL,
                    )
                    for p in provs:
                        p.latency_s = LATENCY_S
                    cpu = self.figure(
                        "efficiency_cpu",
                        "portal CPU per answer, that job to its end (worker /proc)",
                        "ms",
                    )
                    for run in range(s.runs):
                        for p in provs:
                            p.reset()
                        worker = server.worker_pid()
                        cpu_before = bench_promptfoo.proc_cpu_s(worker)
                        ended = []
                        job = server.wait_for(
                            server.submit(make_spec(models, regions, prompts(n))),
                            on_end=lambda e=ended, w=worker: e.append(
                                bench_promptfoo.proc_cpu_s(w)
                            ),
                        )
                        spent = ended[0] - cpu_before
                        cpu.values.append(round(spent / answers * 1000, 2))
                        seconds = job_seconds(job)
                        eff.values.append(round(ideal / seconds, 3))
                        wall.values.append(round(seconds, 2))
                        peak.values.append(max_in_flight(provs))
                        self.say(
                            f"efficiency run {run + 1}: {seconds:.2f} s, {ideal / seconds:.3f}"
                        )
                if "promptfoo" in sections:
                    self.promptfoo(provs, models, s.efficiency_questions)
                if "overhead" in sections:
                    n = s.overhead_questions
                    answers = 3 * 3 * n
                    rate = self.figure(
                        "overhead",
                        f"answers per second, 3x3x{n} at 0 ms, 1 worker",
                        "answers/s",
                        target=">= 200" if self.db == "sqlite" else "",
                        meets=(lambda v: v >= 200) if self.db == "sqlite" else None,
                    )
                    for p in provs:
                        p.latency_s = 0.0
                    for run in range(s.runs):
                        job = server.wait_for(server.submit(make_spec(models, regions, prompts(n))))
                        seconds = job_seconds(job)
                        rate.values.append(round(answers / seconds, 1))
                        self.say(f"overhead run {run + 1}: {answers / seconds:.0f} answers/s")

    def promptfoo(self, provs: list[LoopbackProvider], models: list[str], n: int) -> None:
        """Runs `promptfoo eval -j 9 --no-cache` on the same providers (at 50 ms) and questions."""
        tool = bench_promptfoo.install()
        if tool is None:
            return
        answers = len(provs) * len(models) * n
        ideal = answers / POOL * LATENCY_S
        config = bench_promptfoo.write_config(
            self.workdir / "promptfooconfig.json",
            [p.base_url_openai for p in provs],
            models,
            prompts(n),
        )
        wall = self.figure("promptfoo_wall", f"promptfoo eval -j {POOL}: wall time", "s")
        eff = self.figure("promptfoo_efficiency", "promptfoo: efficiency (same ideal)", "ratio")
        cpu = self.figure("promptfoo_cpu", "promptfoo: CPU per call (start-up included)", "ms")
        for p in provs:
            p.latency_s = LATENCY_S
        for run in range(self.sizes.runs):
            for p in provs:
                p.reset()
            result = bench_promptfoo.run(tool, config, self.workdir, POOL)
            calls = sum(p.count() for p in provs)
            if calls != answers:
                raise RuntimeError(f"promptfoo made {calls} calls, expected {answers}")
            wall.values.append(round(result.wall_s, 2))
            eff.values.append(round(ideal / result.wall_s, 3))
            cpu.values.append(round(result.cpu_s / calls * 1000, 2))
            self.say(f"promptfoo run {run + 1}: {result.wall_s:.2f} s, {cpu.values[-1]} ms/call")
        self.versus_promptfoo(wall, cpu)

    def versus_promptfoo(self, promptfoo_wall: Figure, promptfoo_cpu: Figure) -> None:
        """Adds the portal-to-promptfoo ratios, run by run, when the efficiency section ran too."""
        mine = {f.key: f for f in self.figures}
        if "efficiency_wall" not in mine:
            return
        pairs = (
            ("efficiency_wall", promptfoo_wall, "wall time, portal / promptfoo", 0.5),
            ("efficiency_cpu", promptfoo_cpu, "CPU per answer, portal / promptfoo per call", 0.3),
        )
        for key, theirs, label, bound in pairs:
            ratio = self.figure(
                f"{key}_vs_promptfoo",
                f"{label} (run by run)",
                "ratio",
                target=f"<= {bound}",
                meets=lambda v, bound=bound: v <= bound,
            )
            for portal, tool in zip(mine[key].values, theirs.values, strict=False):
                ratio.values.append(round(portal / tool, 3))

    def calls(self) -> None:
        """CPU per provider call for each wire format (scripts/bench_calls.py)."""
        count = CALLS if self.sizes.runs > 1 else CALLS // 3
        with bench_calls.loopback(ROOT) as url:
            for label, send in bench_calls.senders(url).items():
                fig = self.figure(f"calls:{label}", f"CPU per provider call, {label}", "us")
                for _ in range(self.sizes.runs):
                    fig.values.append(bench_calls.cpu_per_call(send, count))
                self.say(f"{label}: {statistics.median(fig.values):.0f} us per call")

    def pool(self) -> None:
        """Runs 9 executions at 50 ms through a pool of 4 and records the calls in flight."""
        n = self.sizes.pool_questions
        with providers(3, LATENCY_S) as provs:
            config = write_config(
                self.workdir / f"bench-pool-{self.db}.toml",
                3,
                [p.base_url_openai for p in provs],
                POOL,
            )
            env = {"BEACON_MAX_CONCURRENCY": str(SMALL_POOL)}
            with serving(self.workdir, self.dbs, config, **env) as server:
                peak = self.figure(
                    "pool_bound_4",
                    f"max calls in flight, pool {SMALL_POOL} (9 executions, 3x3x{n} at 50 ms)",
                    "calls",
                    target=f"<= {SMALL_POOL}",
                    meets=lambda v: v <= SMALL_POOL,
                )
                for run in range(self.sizes.runs):
                    for p in provs:
                        p.reset()
                    spec = make_spec(MODEL_IDS[:3], REGION_IDS[:3], prompts(n))
                    server.wait_for(server.submit(spec))
                    peak.values.append(max_in_flight(provs))
                    self.say(f"pool run {run + 1}: {peak.values[-1]} in flight at most")

    def latency(self) -> None:
        """Times the job API and the job page for a 3x3x3 job and a big job, client and server."""
        s = self.sizes
        big_m, big_r, big_q = s.big_job
        with providers(10, 0.0) as provs:
            config = write_config(
                self.workdir / f"bench-10x10-{self.db}.toml",
                10,
                [p.base_url_openai for p in provs],
                POOL,
            )
            with serving(self.workdir, self.dbs, config) as server:
                small = server.submit(make_spec(MODEL_IDS[:3], REGION_IDS[:3], prompts(3)))
                big = server.submit(
                    make_spec(MODEL_IDS[:big_m], REGION_IDS[:big_r], prompts(big_q))
                )
                server.wait_for(small)
                server.wait_for(big)
                cases = [
                    ("api", "GET /api/v1/jobs/<id>", "/api/v1/jobs/{}"),
                    ("page", "GET /jobs/<id>", "/jobs/{}"),
                    ("model", "GET /jobs/<id>?model=<model>", "/jobs/{}?model=" + MODEL_IDS[0]),
                    (
                        "cell",
                        "GET /jobs/<id>/models/<model>/questions/0",
                        "/jobs/{}/models/" + MODEL_IDS[0] + "/questions/0",
                    ),
                ]
                jobs_ = [
                    (small, 27, s.small_requests),
                    (big, big_m * big_r * big_q, s.big_requests),
                ]
                app = server.in_process_app()
                client = app.test_client()
                try:
                    for job_id, answers, count in jobs_:
                        for kind, label, path in cases:
                            url = path.format(job_id)
                            self._time_client(server, kind, label, url, answers, count)
                            self._time_server(client, kind, label, url, answers, count)
                finally:
                    with app.app_context():
                        from portal.db import db

                        db.session.remove()
                        db.engine.dispose()
                self.figure(
                    "memory_after_big",
                    f"worker peak RSS after running and serving the {big_m * big_r * big_q}"
                    "-answer job",
                    "MB",
                    values=[round(server.worker_peak_mb(), 1)],
                )

    def _time_client(self, server: Server, kind, label, url, answers, count) -> None:
        p50 = self.figure(f"{kind}_{answers}_p50", f"{label}, {answers} answers, p50", "ms")
        p95 = self.figure(f"{kind}_{answers}_p95", f"{label}, {answers} answers, p95", "ms")
        if kind == "api" and answers == 27:
            p50.target, p50.meets = "< 20", lambda v: v < 20
        if kind == "page" and answers >= 1000:
            p50.target, p50.meets = "< 300", lambda v: v < 300
        server.session.get(server.url + url, timeout=60).raise_for_status()  # warm-up
        for _ in range(self.sizes.runs):
            times = []
            for _ in range(count):
                start = time.perf_counter()
                response = server.session.get(server.url + url, timeout=60)
                times.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
            p50.values.append(round(percentile(times, 50), 1))
            p95.values.append(round(percentile(times, 95), 1))
        self.say(f"{label} {answers} answers: p50 {p50.median:.1f} ms, p95 {p95.median:.1f} ms")

    def _time_server(self, client, kind, label, url, answers, count) -> None:
        fig = self.figure(
            f"{kind}_{answers}_server",
            f"{label}, {answers} answers, server render p50 (in-process)",
            "ms",
        )
        if kind == "page" and answers == 27:
            fig.target, fig.meets = "< 50", lambda v: v < 50
        client.get(url)  # warm-up: templates compiled, comparison cached
        for _ in range(self.sizes.runs):
            times = []
            for _ in range(count):
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code}")
            fig.values.append(round(percentile(times, 50), 1))
        if self.profile_dir is not None and answers >= 1000:
            self._profile(client, f"{kind}_{answers}", url)

    def _profile(self, client, name: str, url: str) -> None:
        """Writes a cProfile of one in-process request, and prints where its time went."""
        profile = cProfile.Profile()
        profile.runcall(client.get, url)
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile_dir / f"{name}_{self.db}.pstats"
        profile.dump_stats(path)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        self.say(f"profile of {url} written to {path}\n{out.getvalue()}")

    def memory(self, with_local_model: bool = True) -> None:
        """Reads a worker's VmHWM after a loopback job, and after one local SmolLM2 answer,
        with the `semantic` extra as installed and with it hidden (a default install)."""
        hidden = {"PYTHONPATH": str(hide_semantic_extra(self.workdir))}
        with providers(3, 0.0) as provs:
            config = write_config(
                self.workdir / f"bench-mem-{self.db}.toml",
                3,
                [p.base_url_openai for p in provs],
                POOL,
            )
            for label, env in (("", {}), (", semantic extra hidden", hidden)):
                fig = self.figure(
                    "memory" + ("_lexical" if env else ""),
                    f"worker peak RSS, loopback 3x3x3 job and its pages{label}",
                    "MB",
                    target="< 150",
                    meets=lambda v: v < 150,
                )
                for run in range(self.sizes.runs):
                    with serving(self.workdir, self.dbs, config, **env) as server:
                        job_id = server.submit(make_spec(MODEL_IDS[:3], REGION_IDS[:3], prompts(3)))
                        server.wait_for(job_id)
                        for path in ("/api/v1/jobs/{}", "/jobs/{}"):
                            server.session.get(server.url + path.format(job_id), timeout=60)
                        fig.values.append(round(server.worker_peak_mb(), 1))
                    self.say(f"memory run {run + 1}{label}: {fig.values[-1]} MB")
        if not with_local_model:
            return
        for label, env in (("", {}), (", semantic extra hidden", hidden)):
            fig = self.figure(
                "memory_local" + ("_lexical" if env else ""),
                f"worker peak RSS after one local SmolLM2 answer{label}",
                "MB",
            )
            for run in range(self.sizes.runs):
                # The embedded default configuration: three local regions serving SmolLM2.
                with serving(self.workdir, self.dbs, None, **env) as server:
                    spec = make_spec(["smollm2-135m"], ["us-east"], ["geography_basic"])
                    job_id = server.submit(spec)
                    server.wait_for(job_id)
                    server.session.get(f"{server.url}/jobs/{job_id}", timeout=60)
                    fig.values.append(round(server.worker_peak_mb(), 1))
                self.say(f"memory run {run + 1}, local model{label}: {fig.values[-1]} MB")


def hide_semantic_extra(workdir: Path) -> Path:
    """Writes a sitecustomize that makes the `semantic` extra's modules unimportable, so a
    server started with it on PYTHONPATH behaves as a default install (lexical comparison)."""
    from portal.compare.similarity import SEMANTIC_MODULES

    folder = workdir / "without-semantic"
    folder.mkdir(exist_ok=True)
    names = ", ".join(repr(name) for name in SEMANTIC_MODULES)
    (folder / "sitecustomize.py").write_text(
        "import sys\n\n"
        "# importlib.util.find_spec() answers None for a module set to None here.\n"
        f"for name in ({names},):\n"
        "    sys.modules[name] = None\n",
        "utf-8",
    )
    return folder


# --- output ------------------------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "calls":
        return f"{value:.0f}"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def table(figures: list[Figure]) -> str:
    """Returns the results as a Markdown table."""
    rows = [
        "| figure | db | median | min | max | unit | runs | target | result |",
        "|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for f in figures:
        rows.append(
            f"| {f.label} | {f.db} | {format_value(f.median, f.unit)} | "
            f"{format_value(min(f.values), f.unit)} | {format_value(max(f.values), f.unit)} | "
            f"{f.unit} | {len(f.values)} | {f.target} | {f.result} |"
        )
    return "\n".join(rows)


def machine_lines(machine: dict) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in machine.items() if v is not None)


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen sections on the chosen databases and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run each, smaller jobs")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these sections ({', '.join(SECTIONS)}); repeat or comma-separate",
    )
    parser.add_argument(
        "--runs", type=int, metavar="N", help="runs per figure (default 3, quick 1)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write results as JSON")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server's maintenance database, where the bench database is created",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also cProfile one in-process request of each 1,000-answer page into DIR",
    )
    args = parser.parse_args(argv)
    sections = set(SECTIONS)
    if args.only:
        sections = {name.strip() for item in args.only for name in item.split(",") if name.strip()}
        unknown = sections - set(SECTIONS)
        if unknown:
            parser.error(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=max(1, args.runs))
    machine = describe_machine(args.postgres_url if "postgres" in kinds else None)
    command = "scripts/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    figures: list[Figure] = []
    workdir = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    try:
        for kind in kinds:
            dbs = Databases(kind, workdir, args.postgres_url)
            bench = Bench(kind, dbs, workdir, sizes, args.profile)
            try:
                if sections & {"efficiency", "overhead", "promptfoo"}:
                    bench.efficiency_and_overhead(sections)
                if "pool" in sections:
                    bench.pool()
                if "calls" in sections and kind == kinds[0]:
                    # No database in a provider call: measured once.
                    bench.calls()
                if "latency" in sections:
                    bench.latency()
                if "memory" in sections:
                    # The model's memory does not depend on the database: measured once.
                    bench.memory(with_local_model=kind == kinds[0])
            finally:
                dbs.close()
            figures += bench.figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    order: dict[str, int] = {}
    for f in figures:
        order.setdefault(f.key, len(order))
    figures.sort(key=lambda f: (order[f.key], kinds.index(f.db)))
    print(f"Beacon benchmark: {command.strip()} ({elapsed:.0f} s)")
    print(machine_lines(machine))
    print()
    print(table(figures))
    missed = [f for f in figures if f.result == "MISSED"]
    print()
    print(f"{len(missed)} target(s) missed" if missed else "every target met")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command.strip(),
                    "quick": args.quick,
                    "seconds": round(elapsed, 1),
                    "machine": machine,
                    "figures": [f.as_dict() for f in figures],
                },
                indent=2,
            )
            + "\n",
            "utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
