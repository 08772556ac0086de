"""The pages' sections of scripts/bench.py: how long the job JSON, the job page, one model's
view and a cell page take for a 27-answer and a big job (client over HTTP, and the app in this
process), and the worker's peak memory after a loopback job and after one local SmolLM2 answer."""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from pathlib import Path

from bench_common import (
    MODEL_IDS,
    POOL,
    Section,
    Target,
    make_spec,
    memory_mb,
    percentile,
    providers,
    spec_for,
    write_config,
)
from bench_measure import run_job, wait_for_comparison
from bench_server import Server, serving

from portal.status import JOB_ENDED


class Pages(Section):
    """latency and memory on one database."""

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
                small = server.submit(make_spec(3, 3, 3))
                big = server.submit(make_spec(big_m, big_r, big_q))
                for job_id in (small, big):
                    # Each page is timed with its comparison cached, as for any ended job.
                    wait_ended(server, job_id)
                    wait_for_comparison(server, job_id)
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
                    values=[round(memory_mb(server.worker_pids()[0]), 1)],
                )

    def _time_client(self, server: Server, kind, label, url, answers, count) -> None:
        p50 = self.figure(f"{kind}_{answers}_p50", f"{label}, {answers} answers, p50", "ms")
        p95 = self.figure(f"{kind}_{answers}_p95", f"{label}, {answers} answers, p95", "ms")
        if kind == "api" and answers == 27:
            p50.target = Target("<=", 20)
        if kind == "page" and answers >= 1000:
            p50.target = Target("<=", 300)
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
            fig.target = Target("<=", 50)
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
        if self.options.get("profile") is not None and answers >= 1000:
            self._profile(client, f"{kind}_{answers}", url)

    def _profile(self, client, name: str, url: str) -> None:
        """Writes a cProfile of one in-process request, and prints where its time went."""
        profile = cProfile.Profile()
        profile.runcall(client.get, url)
        directory = self.options["profile"]
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}_{self.db}.pstats"
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
                    target=Target("<=", 150),
                )
                for run in range(self.sizes.runs):
                    with serving(self.workdir, self.dbs, config, **env) as server:
                        job_id = run_job(server, make_spec(3, 3, 3)).job_id
                        wait_for_comparison(server, job_id)
                        for path in ("/api/v1/jobs/{}", "/jobs/{}"):
                            server.session.get(server.url + path.format(job_id), timeout=60)
                        fig.values.append(round(memory_mb(server.worker_pids()[0]), 1))
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
                    spec = local_spec()
                    job_id = run_job(server, spec).job_id
                    wait_for_comparison(server, job_id)
                    server.session.get(f"{server.url}/jobs/{job_id}", timeout=60)
                    fig.values.append(round(memory_mb(server.worker_pids()[0]), 1))
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


def wait_ended(server: Server, job_id: str, timeout: float = 600.0) -> None:
    """Polls the job JSON until the job has ended (a job submitted beside another)."""
    deadline = time.monotonic() + timeout
    while server.get_json(f"/api/v1/jobs/{job_id}")["job"]["status"] not in JOB_ENDED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} did not end within {timeout:g} s")
        time.sleep(0.1)


def local_spec() -> dict:
    """One bank question of the local model in one region of the embedded default."""
    return spec_for(["smollm2-135m"], ["us-east"], ["geography_basic"])
