"""`--only harness`: what the difference between the two ways of measuring a job is made of.

On a fresh server per run, the 900-answer job at 50 ms three times in a row: the first job of a
fresh process, then the same job again on the warm process, then once more with its JSON polled
once a second instead of every 25 ms (what the polls cost the job). After the first, the
comparison the worker computes once a job ends (from the job's `finished_at` to the comparison
cached on its row, watched every 20 ms, and the CPU of every process from `completed` read until
then); after the second, the cost of one poll of the job JSON (CPU of every process over 40
polls of the ended job); and for the second job, the end of each execution (its `finished_at`
minus its last answer's: the execution's `finished_at` is set before its receipt and log append
are written, so the receipts show in the efficiency section's "tail", last call answered to the
job's `finished_at`, not here), and the processes other than the worker (gunicorn's master).
"""

from __future__ import annotations

import statistics
import time

from bench_common import (
    LATENCY_S,
    POOL,
    Section,
    epoch,
    groups_cpu_s,
    make_spec,
    providers,
    write_config,
)
from bench_measure import ComparisonWatch, run_job, wait_for_comparison
from bench_server import serving

POLL_COST_REQUESTS = 40
SLOW_POLL_S = 1.0


class Harness(Section):
    def run(self) -> None:
        n = self.sizes.efficiency_questions
        with providers(3, LATENCY_S) as provs:
            config = write_config(
                self.workdir / f"bench-harness-{self.db}.toml",
                3,
                [p.base_url_openai for p in provs],
                POOL,
            )
            for run in range(self.sizes.runs):
                with serving(self.workdir, self.dbs, config, BEACON_SEMANTIC="0") as server:
                    self.one_run(server, n, run)

    def add(self, key: str, label: str, unit: str, value: float) -> None:
        self.figure(key, label, unit).values.append(round(value, 4))

    def one_run(self, server, n: int, run: int) -> None:
        poll_s = self.options["poll_s"]
        spec = make_spec(3, 3, n)
        watch = ComparisonWatch(server, spec["id"])
        watch.start()
        cold = run_job(server, spec, poll_s)
        before = groups_cpu_s(server.groups())
        watch.join(timeout=600)
        compare_cpu = groups_cpu_s(server.groups()) - before
        warm = run_job(server, make_spec(3, 3, n), poll_s)
        wait_for_comparison(server, warm.job_id)
        per_poll_ms, poll_wall_ms = self.poll_cost(server, warm.job_id)
        # The same job once more on the warm server, its JSON polled once a second: what the
        # polls themselves do to the job (its own wall time does not depend on when it is read).
        slow = run_job(server, make_spec(3, 3, n), SLOW_POLL_S)
        wait_for_comparison(server, slow.job_id)
        self.add(
            "h_slow_job_wall",
            f"third job, polled every {SLOW_POLL_S:g} s: its own submitted_at to finished_at",
            "s",
            slow.job_wall_s,
        )
        self.add(
            "h_poll_extra",
            f"the polls' cost on the job's own wall (polled every {poll_s * 1000:g} ms minus "
            f"every {SLOW_POLL_S:g} s)",
            "s",
            warm.job_wall_s - slow.job_wall_s,
        )
        self.add(
            "h_slow_cpu",
            f"third job, polled every {SLOW_POLL_S:g} s: CPU per answer, every process",
            "ms",
            slow.cpu_ms_per_answer(),
        )
        answers = cold.answers
        self.add(
            "h_cold_wall",
            "first job of a fresh server: wall, submission to completed read",
            "s",
            cold.wall_s,
        )
        self.add(
            "h_warm_wall",
            "second job, same server: wall, submission to completed read",
            "s",
            warm.wall_s,
        )
        self.add(
            "h_first_extra",
            "first job's extra wall (first minus second)",
            "s",
            cold.wall_s - warm.wall_s,
        )
        self.add(
            "h_cold_job_wall",
            "first job: its own submitted_at to finished_at",
            "s",
            cold.job_wall_s,
        )
        self.add(
            "h_warm_job_wall",
            "second job: its own submitted_at to finished_at",
            "s",
            warm.job_wall_s,
        )
        self.add(
            "h_cold_cpu", "first job: CPU per answer, every process", "ms", cold.cpu_ms_per_answer()
        )
        self.add(
            "h_warm_cpu",
            "second job: CPU per answer, every process",
            "ms",
            warm.cpu_ms_per_answer(),
        )
        self.add(
            "h_warm_cpu_workers",
            "second job: CPU per answer, the worker only",
            "ms",
            warm.cpu_ms_per_answer(workers_only=True),
        )
        self.add(
            "h_other_cpu",
            "second job: CPU per answer of the other processes (master)",
            "ms",
            (warm.cpu_all_s - warm.cpu_workers_s) / answers * 1000,
        )
        self.add(
            "h_poll_cpu",
            f"one poll of the {answers}-answer job JSON: CPU of every process",
            "ms",
            per_poll_ms,
        )
        self.add("h_poll_wall", "one poll of the job JSON: client wall time", "ms", poll_wall_ms)
        self.add(
            "h_polls",
            f"polls during the second job (every {poll_s * 1000:g} ms)",
            "calls",
            warm.polls,
        )
        self.add(
            "h_poll_share",
            "polls' CPU per answer (polls x CPU per poll / answers)",
            "ms",
            warm.polls * per_poll_ms / answers,
        )
        if watch.cached_at is not None:
            self.add(
                "h_compare_wait",
                "comparison after the job: finished_at to cached",
                "s",
                watch.cached_at - cold.finished,
            )
            self.add(
                "h_compare_seen",
                "comparison cached minus completed read (> 0: after it)",
                "s",
                watch.cached_at - cold.seen,
            )
            self.add(
                "h_compare_cpu",
                "CPU of every process from completed read to the comparison cached",
                "ms",
                compare_cpu * 1000,
            )
        ends = self.execution_ends(server, warm)
        if ends:
            self.add(
                "h_execution_end",
                "an execution's end: its finished_at minus its last answer's (median)",
                "ms",
                statistics.median(ends),
            )
        self.say(
            f"harness run {run + 1}: first {cold.wall_s:.2f} s, second {warm.wall_s:.2f} s, "
            f"poll {per_poll_ms:.1f} ms CPU x {warm.polls}"
        )

    def poll_cost(self, server, job_id: str) -> tuple[float, float]:
        """Returns the CPU of every process per poll of the ended job's JSON, and its wall, ms."""
        url = f"{server.url}/api/v1/jobs/{job_id}"
        server.session.get(url, timeout=60).raise_for_status()
        before, started = groups_cpu_s(server.groups()), time.perf_counter()
        for _ in range(POLL_COST_REQUESTS):
            server.session.get(url, timeout=60).raise_for_status()
        wall = (time.perf_counter() - started) / POLL_COST_REQUESTS * 1000
        cpu = (groups_cpu_s(server.groups()) - before) / POLL_COST_REQUESTS * 1000
        return cpu, wall

    @staticmethod
    def execution_ends(server, job) -> list[float]:
        """Returns, per execution, its finished_at minus its last answer's, in ms."""
        last: dict[tuple, float] = {}
        for answer in server.answers(job.job_id):
            key = (answer["model_id"], answer["region"])
            last[key] = max(last.get(key, 0.0), epoch(answer["finished_at"]))
        ends = []
        for execution in job.job.get("executions", []):
            key = (execution["model_id"], execution["region"])
            if key in last and execution["finished_at"]:
                ends.append((epoch(execution["finished_at"]) - last[key]) * 1000)
        return ends
