"""`--only scale`: the cost curve against job size, for scripts/bench.py.

Jobs of 10 models x 10 regions x 10 / 30 / 100 questions (1,000 / 3,000 / 10,000 answers) at
0 ms, on a fresh server with two gunicorn workers (pool 9 each), lexical comparison
(BEACON_SEMANTIC=0). For each size: the submission request's time; answers per second per
worker process (answers / (completed read - submission accepted) / 2); the comparison's time
after the job (completed read to cached, lexical); the job page, one model's view of it, the
job list and the API's job JSON (p50 of N sequential requests after one warm-up); the evidence
file (its size and time); the workers' peak RSS (the larger of the two VmHWM, after all of it).

Then the semantic comparison, when the `semantic` extra is installed: a second server with
BEACON_SEMANTIC=1 on the same database; a 1-answer job's comparison is asked first (so the
model is loaded), then the big job's twice: the first computes it (its lexical cache is stale
for a semantic server), the second is served from the cache; the figure is their difference.
"""

from __future__ import annotations

import time

from bench_common import (
    MODEL_IDS,
    POOL,
    Section,
    Target,
    make_spec,
    memory_mb,
    percentile,
    providers,
    write_config,
)
from bench_measure import ComparisonWatch, run_job
from bench_server import Server

WORKERS = 2
# The targets for the 10,000-answer job on 2 cores, by the figure's last word.
TARGETS = {
    "submit": Target("<=", 1.0),
    "rate": Target(">=", 250),
    "total": Target(">=", 500),
    "page": Target("<=", 300),
}


class Scale(Section):
    def run(self) -> None:
        with providers(10, 0.0) as provs:
            config = write_config(
                self.workdir / f"bench-scale-{self.db}.toml",
                10,
                [p.base_url_openai for p in provs],
                POOL,
            )
            for questions in self.sizes.scale_questions:
                self.one_size(config, questions)

    def add(self, key: str, label: str, unit: str, value: float) -> None:
        target = TARGETS.get(key.rsplit("_", 1)[-1]) if key.startswith("scale_10000_") else None
        self.figure(key, label, unit, target=target).values.append(round(value, 3))

    def one_size(self, config, questions: int) -> None:
        answers = 100 * questions
        database = self.dbs.fresh()
        server = Server(
            self.workdir, database, config, workers=WORKERS, BEACON_SEMANTIC="0"
        ).start()
        try:
            tiny = run_job(server, make_spec(1, 1, 1)).job_id
            spec = make_spec(10, 10, questions)
            watch = ComparisonWatch(server, spec["id"], timeout=900)
            watch.start()
            job = run_job(server, spec, self.options["poll_s"])
            rate = job.answers / (job.seen - job.accepted) / WORKERS
            watch.join(timeout=900)
            compared = watch.cached_at - job.finished if watch.cached_at else -1.0
            self.add(
                f"scale_{answers}_submit",
                f"{answers} answers: submission request",
                "s",
                job.accepted - job.sent,
            )
            self.add(
                f"scale_{answers}_rate",
                f"{answers} answers: answers/s per worker process",
                "answers/s",
                rate,
            )
            self.add(
                f"scale_{answers}_total",
                f"{answers} answers: answers/s, both worker processes",
                "answers/s",
                rate * WORKERS,
            )
            self.add(
                f"scale_{answers}_cpu",
                f"{answers} answers: CPU per answer, every process",
                "ms",
                job.cpu_ms_per_answer(),
            )
            self.add(
                f"scale_{answers}_compare",
                f"{answers} answers: comparison after the job, lexical: finished_at to cached",
                "s",
                compared,
            )
            self.pages(server, job.job_id, answers)
            self.evidence(server, job.job_id, answers)
            peak = max(memory_mb(pid) for pid in server.worker_pids())
            self.add(f"scale_{answers}_rss", f"{answers} answers: worker peak RSS", "MB", peak)
            self.say(
                f"scale {answers}: {rate:.0f} answers/s per worker, compared in {compared:.1f} s"
            )
        finally:
            server.stop()
        self.semantic(config, database, tiny, job.job_id, answers)

    def pages(self, server, job_id: str, answers: int) -> None:
        cases = (
            ("page", "the job page", f"/jobs/{job_id}"),
            ("model", "one model's view", f"/jobs/{job_id}?model={MODEL_IDS[0]}"),
            ("list", "the job list", "/jobs"),
            ("api", "the API's job JSON", f"/api/v1/jobs/{job_id}"),
        )
        for key, label, path in cases:
            server.session.get(server.url + path, timeout=600).raise_for_status()  # warm-up
            times, size = [], 0
            for _ in range(self.sizes.page_requests):
                started = time.perf_counter()
                response = server.session.get(server.url + path, timeout=600)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                size = len(response.content)
            self.add(
                f"scale_{answers}_{key}",
                f"{answers} answers: {label}, p50",
                "ms",
                percentile(times, 50),
            )
            self.add(
                f"scale_{answers}_{key}_kb", f"{answers} answers: {label}, size", "KB", size / 1024
            )

    def evidence(self, server, job_id: str, answers: int) -> None:
        started = time.perf_counter()
        response = server.session.get(f"{server.url}/api/v1/jobs/{job_id}/evidence", timeout=600)
        seconds = time.perf_counter() - started
        response.raise_for_status()
        self.add(
            f"scale_{answers}_evidence_s", f"{answers} answers: evidence file, time", "s", seconds
        )
        self.add(
            f"scale_{answers}_evidence_mb",
            f"{answers} answers: evidence file, size",
            "MB",
            len(response.content) / 1024 / 1024,
        )

    def semantic(self, config, database: str, tiny: str, job_id: str, answers: int) -> None:
        from portal.compare.similarity import semantic_available

        if not semantic_available():
            self.say("the semantic extra is not installed: no semantic comparison time")
            return
        server = Server(self.workdir, database, config, workers=1, BEACON_SEMANTIC="1").start()
        try:
            server.get_json(f"/api/v1/jobs/{tiny}/comparison")  # loads the model
            times = []
            for _ in range(2):
                started = time.perf_counter()
                server.get_json(f"/api/v1/jobs/{job_id}/comparison")
                times.append(time.perf_counter() - started)
        finally:
            server.stop()
        self.add(
            f"scale_{answers}_compare_semantic",
            f"{answers} answers: comparison, semantic (first request minus the cached one)",
            "s",
            times[0] - times[1],
        )
