"""Many executions at once, for scripts/bench.py.

`wide`: the 2,000-answer job (10 models x 10 regions x 20 questions) at 0.5 s latency, with a
pool of 100 in one gunicorn worker, then two workers with a pool of 50 each: ideal
2,000 / 100 x 0.5 s = 10 s.

`scaleout` (PostgreSQL): one web instance (gunicorn, one worker, BEACON_DISPATCHER=0, so it
runs no work) and 1, 2 and 4 processes of the Procfile's `worker` line, a 10 x 10 x 20 job at
20 ms; answers per second from submission to `completed` read, and per worker process.
"""

from __future__ import annotations

import math

from bench_common import Section, Target, make_spec, max_in_flight, providers, write_config
from bench_measure import run_job
from bench_server import serving

WIDE_LATENCY_S = 0.5
WIDE_POOL = 100
SCALEOUT_LATENCY_S = 0.020
SCALEOUT_POOL = 20


class Fanout(Section):
    def wide(self) -> None:
        m, r, q = self.sizes.wide_job
        # Each execution asks its questions one after the other: executions / pool rounds.
        ideal = math.ceil(m * r / WIDE_POOL) * q * WIDE_LATENCY_S
        with providers(r, WIDE_LATENCY_S) as provs:
            config = write_config(
                self.workdir / f"bench-wide-{self.db}.toml",
                m,
                [p.base_url_openai for p in provs],
                WIDE_POOL,
            )
            for workers in (1, 2):
                pool = WIDE_POOL // workers
                label = f"{m}x{r}x{q} at 0.5 s, {workers} worker(s) x pool {pool}"
                for run in range(self.sizes.runs):
                    for p in provs:
                        p.reset()
                    with serving(
                        self.workdir,
                        self.dbs,
                        config,
                        workers=workers,
                        BEACON_MAX_CONCURRENCY=str(pool),
                        BEACON_SEMANTIC="0",
                    ) as server:
                        job = run_job(server, make_spec(m, r, q), self.options["poll_s"])
                    key = f"wide_{workers}"
                    self.figure(
                        key,
                        f"fan-out efficiency, {label}: submission to completed read",
                        "ratio",
                        target=Target(">=", 0.85),
                        note=f"ideal {ideal:.1f} s",
                    ).values.append(round(ideal / job.wall_s, 3))
                    self.figure(
                        f"{key}_job", "the same, job's own submitted_at to finished_at", "ratio"
                    ).values.append(round(ideal / job.job_wall_s, 3))
                    self.figure(
                        f"{key}_wall", f"wall time (ideal {ideal:.1f} s)", "s"
                    ).values.append(round(job.wall_s, 2))
                    self.figure(
                        f"{key}_cpu",
                        f"portal CPU per answer, every process, {workers} worker(s)",
                        "ms",
                    ).values.append(round(job.cpu_ms_per_answer(), 2))
                    self.figure(
                        f"{key}_in_flight",
                        f"max calls in flight, {workers} worker(s)",
                        "calls",
                        target=Target("<=", WIDE_POOL),
                    ).values.append(max_in_flight(provs))
                    self.say(f"wide, {workers} worker(s), run {run + 1}: {job.wall_s:.2f} s")

    def scaleout(self) -> None:
        m, r, q = self.sizes.scaleout_job
        with providers(r, SCALEOUT_LATENCY_S) as provs:
            config = write_config(
                self.workdir / f"bench-scaleout-{self.db}.toml",
                m,
                [p.base_url_openai for p in provs],
                SCALEOUT_POOL,
            )
            for count in self.sizes.scaleout_workers:
                for run in range(self.sizes.runs):
                    with serving(
                        self.workdir, self.dbs, config, BEACON_DISPATCHER="0", BEACON_SEMANTIC="0"
                    ) as server:
                        for _ in range(count):
                            server.add_worker()
                        job = run_job(server, make_spec(m, r, q), self.options["poll_s"])
                    label = (
                        f"{m}x{r}x{q} at 20 ms, {count} worker process(es), pool {SCALEOUT_POOL}"
                    )
                    self.figure(
                        f"scaleout_{count}", f"answers per second, {label}", "answers/s"
                    ).values.append(round(job.rate, 1))
                    self.figure(
                        f"scaleout_{count}_each",
                        f"answers per second per worker process, {count} worker(s)",
                        "answers/s",
                    ).values.append(round(job.rate / count, 1))
                    self.figure(
                        f"scaleout_{count}_cpu",
                        f"portal CPU per answer, every process, {count} worker(s)",
                        "ms",
                    ).values.append(round(job.cpu_ms_per_answer(), 2))
                    self.say(
                        f"scale-out, {count} worker(s), run {run + 1}: {job.rate:.0f} answers/s"
                    )
