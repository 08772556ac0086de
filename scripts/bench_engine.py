"""The engine's sections of scripts/bench.py: the 900-answer job at 50 ms (efficiency, CPU),
beside `promptfoo eval -j 9`, at 0 ms (overhead), the pool bound, and the profile of a job.

Every measured job runs on a fresh server (a new database and a new gunicorn) and is measured
as a user sees it (scripts/bench_measure.py); the job's own figures are kept beside.
"""

from __future__ import annotations

import shutil

import bench_breakdown
import bench_promptfoo
from bench_common import (
    LATENCY_S,
    POOL,
    Section,
    Target,
    make_spec,
    max_in_flight,
    providers,
    write_config,
)
from bench_measure import JobRun, run_job
from bench_server import serving

SMALL_POOL = 4
# The comparison a worker computes when a job ends comes after `completed`, so it is in no
# figure of these sections; lexical keeps it short, so stopping the server does not wait on it.
ENGINE_ENV = {"BEACON_SEMANTIC": "0"}


class Engine(Section):
    """efficiency, overhead, promptfoo, pool and --profile on one database."""

    def run(self, sections: set[str]) -> None:
        n = self.sizes.efficiency_questions
        with providers(3, LATENCY_S) as provs:
            self.config = write_config(
                self.workdir / f"bench-3x3-{self.db}.toml",
                3,
                [p.base_url_openai for p in provs],
                POOL,
            )
            if "efficiency" in sections:
                for run in range(self.sizes.runs):
                    self.efficiency_run(provs, n, run)
            if "promptfoo" in sections:
                self.promptfoo(provs, n)
            if self.options.get("profile"):
                self.profile(provs, n)
            if "pool" in sections:
                self.pool(provs)
            if "overhead" in sections:
                for p in provs:
                    p.latency_s = 0.0
                for run in range(self.sizes.runs):
                    self.overhead_run(self.sizes.overhead_questions, run)
                for p in provs:
                    p.latency_s = LATENCY_S

    def _job(self, provs, n: int, **server_options) -> tuple[JobRun, list[dict]]:
        """Runs one 3x3xn job on a fresh server; returns it and its answers (from the API)."""
        for p in provs:
            p.reset()
        env = {**ENGINE_ENV, **server_options.pop("env", {})}
        with serving(self.workdir, self.dbs, self.config, **server_options, **env) as server:
            job = run_job(server, make_spec(3, 3, n), self.options["poll_s"])
            answers = server.answers(job.job_id)
        return job, answers

    def efficiency_run(self, provs, n: int, run: int) -> None:
        answers = 9 * n
        ideal = answers / POOL * LATENCY_S
        job, found = self._job(provs, n)
        arrivals = [c["started"] for p in provs for c in p.calls]
        answered = [c["finished"] for p in provs for c in p.calls if c["finished"]]
        label = f"3x3x{n} at 50 ms, pool {POOL}"
        rows = [
            (
                "efficiency",
                f"fan-out efficiency, {label}: submission to completed read",
                "ratio",
                ideal / job.wall_s,
                Target(">=", 0.85),
            ),
            (
                "efficiency_job",
                "fan-out efficiency, job's own submitted_at to finished_at",
                "ratio",
                ideal / job.job_wall_s,
                None,
            ),
            (
                "efficiency_wall",
                f"wall time, submission to completed read (ideal {ideal:.2f} s)",
                "s",
                job.wall_s,
                None,
            ),
            (
                "efficiency_job_wall",
                "wall time, job's own submitted_at to finished_at",
                "s",
                job.job_wall_s,
                None,
            ),
            (
                "efficiency_cpu",
                "portal CPU per answer, every process of the group",
                "ms",
                job.cpu_ms_per_answer(),
                None,
            ),
            (
                "efficiency_cpu_workers",
                "portal CPU per answer, the worker process only",
                "ms",
                job.cpu_ms_per_answer(workers_only=True),
                None,
            ),
            (
                "part_submit",
                "of the wall: the submission request",
                "s",
                job.accepted - job.sent,
                None,
            ),
            (
                "part_first_call",
                "of the wall: submission sent to the first call's arrival",
                "s",
                min(arrivals) - job.sent,
                None,
            ),
            (
                "part_calls",
                "of the wall: first call's arrival to last call answered",
                "s",
                max(answered) - min(arrivals),
                None,
            ),
            (
                "part_tail",
                "of the wall: last call answered to the job's finished_at",
                "s",
                job.finished - max(answered),
                None,
            ),
            (
                "part_seen",
                "of the wall: finished_at to completed read by the poll",
                "s",
                job.seen - job.finished,
                None,
            ),
            (
                "efficiency_polls",
                f"polls of the job JSON (every {self.options['poll_s'] * 1000:g} ms)",
                "calls",
                job.polls,
                None,
            ),
            (
                "pool_bound_9",
                f"max calls in flight, pool {POOL} (9 executions)",
                "calls",
                max_in_flight(provs),
                Target("<=", POOL),
            ),
        ]
        for key, text, unit, value, target in rows:
            self.figure(key, text, unit, target=target).values.append(round(value, 4))
        parts = bench_breakdown.describe(bench_breakdown.pairs(found, provs))
        if parts:
            for part in ("gap", "between", "receive", "send"):
                self.figure(
                    f"breakdown_{part}",
                    f"between two calls of one execution: {part}, mean",
                    "ms",
                ).values.append(parts[part]["mean_ms"])
        self.say(
            f"efficiency run {run + 1}: {job.wall_s:.2f} s seen ({ideal / job.wall_s:.3f}), "
            f"{job.job_wall_s:.2f} s own, {job.cpu_ms_per_answer():.2f} ms CPU/answer"
        )

    def overhead_run(self, n: int, run: int) -> None:
        with serving(self.workdir, self.dbs, self.config, **ENGINE_ENV) as server:
            job = run_job(server, make_spec(3, 3, n), self.options["poll_s"])
        sqlite = self.db == "sqlite"
        self.figure(
            "overhead",
            f"answers per second, 3x3x{n} at 0 ms, 1 worker, submission to completed read",
            "answers/s",
            target=Target(">=", 200) if sqlite else None,
        ).values.append(round(job.rate, 1))
        self.figure(
            "overhead_job", "answers per second, job's own submitted_at to finished_at", "answers/s"
        ).values.append(round(job.answers / job.job_wall_s, 1))
        self.say(f"overhead run {run + 1}: {job.rate:.0f} answers/s")

    def pool(self, provs) -> None:
        """Runs 9 executions at 50 ms through a pool of 4 and records the calls in flight."""
        n = self.sizes.pool_questions
        peak = self.figure(
            "pool_bound_4",
            f"max calls in flight, pool {SMALL_POOL} (9 executions, 3x3x{n} at 50 ms)",
            "calls",
            target=Target("<=", SMALL_POOL),
        )
        for run in range(self.sizes.runs):
            self._job(provs, n, env={"BEACON_MAX_CONCURRENCY": str(SMALL_POOL)})
            peak.values.append(max_in_flight(provs))
            self.say(f"pool run {run + 1}: {peak.values[-1]} in flight at most")

    def promptfoo(self, provs, n: int) -> None:
        """Runs `promptfoo eval -j 9 --no-cache` on the same providers (at 50 ms) and questions."""
        tool = bench_promptfoo.install()
        if tool is None:
            return
        answers = 9 * n
        ideal = answers / POOL * LATENCY_S
        config = bench_promptfoo.write_config(
            self.workdir / "promptfooconfig.json",
            [p.base_url_openai for p in provs],
            [f"model-{i:02d}" for i in range(1, 4)],
            [f"Benchmark question {i}: what is {i} plus {i}?" for i in range(1, n + 1)],
        )
        wall = self.figure("promptfoo_wall", f"promptfoo eval -j {POOL}: wall time", "s")
        eff = self.figure("promptfoo_efficiency", "promptfoo: efficiency (same ideal)", "ratio")
        cpu = self.figure("promptfoo_cpu", "promptfoo: CPU per call (start-up included)", "ms")
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

    def versus_promptfoo(self, promptfoo_wall, promptfoo_cpu) -> None:
        """Adds the portal-to-promptfoo ratios, run by run, when the efficiency section ran too."""
        mine = {f.key: f for f in self.figures}
        pairs = (
            ("efficiency_wall", promptfoo_wall, "wall time, portal / promptfoo", Target("<=", 0.5)),
            ("efficiency_job_wall", promptfoo_wall, "wall time, job's own / promptfoo", None),
            (
                "efficiency_cpu",
                promptfoo_cpu,
                "CPU per answer, portal / promptfoo per call",
                Target("<=", 0.3),
            ),
            (
                "efficiency_cpu_workers",
                promptfoo_cpu,
                "CPU per answer, worker only / promptfoo per call",
                None,
            ),
        )
        for key, theirs, label, target in pairs:
            if key not in mine:
                continue
            ratio = self.figure(
                f"{key}_vs_promptfoo", f"{label} (run by run)", "ratio", target=target
            )
            for portal, tool in zip(mine[key].values, theirs.values, strict=False):
                ratio.values.append(round(portal / tool, 3))

    def profile(self, provs, n: int) -> None:
        """One 3x3xn job on a fresh server whose worker is profiled from submission to
        completed; writes the profile, its summary and the breakdown into the --profile DIR."""
        directory = self.options["profile"]
        directory.mkdir(parents=True, exist_ok=True)
        config, flags = bench_breakdown.profiling_config(self.workdir)
        for p in provs:
            p.reset()
        with serving(
            self.workdir, self.dbs, self.config, gunicorn_config=config, **ENGINE_ENV
        ) as server:
            bench_breakdown.profile_on(flags)
            job = run_job(server, make_spec(3, 3, n), self.options["poll_s"])
            written = bench_breakdown.profile_off(flags, 1)
            found = server.answers(job.job_id)
        target = directory / f"worker-efficiency-{self.db}.pstats"
        shutil.move(str(written[0]), target)
        summary = bench_breakdown.summary(target)
        (directory / f"worker-efficiency-{self.db}.txt").write_text(summary, "utf-8")
        parts = bench_breakdown.describe(bench_breakdown.pairs(found, provs))
        parts["wall_s"] = round(job.wall_s, 3)
        parts["job_wall_s"] = round(job.job_wall_s, 3)
        bench_breakdown.write(directory, f"breakdown-efficiency-{self.db}", parts)
        self.say(
            f"profiled job: {job.wall_s:.2f} s (slower under cProfile); profile in {target}\n"
            + bench_breakdown.text(parts)
        )
