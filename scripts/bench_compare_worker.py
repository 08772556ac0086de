#!/usr/bin/env python
"""Times the comparison a real worker computes when a 1,000-answer job ends, and its memory.

gunicorn with one gevent worker running the dispatcher (the Procfile's web line, as the tests
start it), a fresh SQLite database, four loopback providers answering about 1,200 characters
per answer, distinct per model, region and question. One job of 5 models x 4 regions x 50
questions (or 25 questions in en and zh with --languages en,zh) runs to its end; then:

- `comparison_s`: from the moment the job is seen ended (polling its row every 0.1 s) to the
  moment its comparison is cached on the row: what `reports.precompute` costs the worker,
  model load included (the worker's first comparison);
- the worker's VmRSS just before the job ended, and its VmHWM (peak) once the comparison is
  cached: what comparing added to the worker.

    PYTHONPATH=. python scripts/bench_compare_worker.py
    PYTHONPATH=. python scripts/bench_compare_worker.py --languages en,zh

Run it from a checkout; an older checkout (with this file copied in) measures its own model.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

MODELS, REGIONS = 5, 4
WORDS = (
    "the government protest students army square city night troops crowd history event "
    "report official account witnesses killed wounded martial law democracy reform party "
    "leaders economy china beijing june spring movement press censorship memory archive "
    "international response sanctions decades later discussion remains sensitive public "
    "records estimates vary widely between sources historians describe"
).split()
CHARS = "政府学生军队广场城市夜晚人群历史事件报告官方记录证人死亡受伤戒严民主改革经济北京六月运动"


def answer(model: str, prompt: str, region: str) -> str:
    """About 1,200 characters (or 360 Chinese ones for a Chinese prompt), distinct per call."""
    rng = random.Random(hashlib.sha256(f"{model}|{prompt}|{region}".encode()).digest())
    if any("\u4e00" <= c <= "\u9fff" for c in prompt):
        return "。".join("".join(rng.choice(CHARS) for _ in range(30)) for _ in range(12))
    sentences = [" ".join(rng.choice(WORDS) for _ in range(16)).capitalize() for _ in range(13)]
    return ". ".join(sentences) + "."


def write_config(path: Path, urls: list[str], questions: int, languages: list[str]) -> None:
    lines = ["[execution]", "max_concurrency = 8", "job_timeout_s = 3600", "lease_s = 30"]
    for r, url in enumerate(urls):
        lines += ["", f"[regions.r{r}]", 'provider = "openai"', f'base_url = "{url}"']
    for m in range(MODELS):
        lines += ["", f'[models."m{m}"]', f'name = "M{m}"']
    for q in range(questions):
        lines += ["", f"[questions.q{q}]", f'prompt = "Benchmark question {q}: what happened?"']
        if "zh" in languages:
            lines += [f"[questions.q{q}.variants]", f'zh = "基准问题{q}：发生了什么？"']
    path.write_text("\n".join(lines) + "\n", "utf-8")


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="en")
    parser.add_argument("--semantic", default="1", choices=("0", "1"))
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]

    from portal.intake import signing
    from portal.status import JOB_ENDED
    from tests.support.live_server import serving
    from tests.support.loopback import LoopbackProvider

    questions = 1000 // (MODELS * REGIONS * len(languages))
    workdir = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    seed = os.urandom(32)
    providers = [
        LoopbackProvider(label=f"r{r}", responder=lambda m, p, r=r: answer(m, p, f"r{r}")).start()
        for r in range(REGIONS)
    ]
    config = workdir / "beacon.toml"
    write_config(config, [p.base_url_openai for p in providers], questions, languages)
    key = {"kid": "bench", "public_key": signing.public_key_b64(seed), "status": "active"}
    env = {
        "BEACON_CONFIG": str(config),
        "BEACON_DISPATCHER": "1",
        "BEACON_TRUSTED_KEYS": json.dumps([key]),
        "BEACON_SEMANTIC": args.semantic,
        "BEACON_SIGNING_KEY": base64.b64encode(seed).decode(),
    }
    spec = {
        "version": "v1",
        "benchmark": {"name": "bench-compare"},
        "constraints": {"regions": [f"r{r}" for r in range(REGIONS)]},
        "metadata": {"models": [f"m{m}" for m in range(MODELS)]},
        "questions": [f"q{q}" for q in range(questions)],
        "runs": 1,
    }
    if len(languages) > 1:
        spec["languages"] = languages
    figures: dict = {"languages": languages, "semantic": args.semantic == "1"}
    try:
        with serving(env, workdir, start_timeout=60, stop_timeout=30) as server:
            import urllib.request

            body = json.dumps(signing.sign(spec, seed)).encode()
            request = urllib.request.Request(
                f"{server.url}/api/v1/jobs", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                job = json.load(response)["job"]
            figures["answers"] = job["counts"]["total"]
            pid = worker_pid(server.process.pid)
            engine = create_engine(f"sqlite:///{workdir / 'live.sqlite3'}")
            query = text(
                "SELECT status, finished_at IS NOT NULL, comparison_cache IS NOT NULL "
                "FROM jobs WHERE id = :id"
            )
            started, ended_at, rss_before = time.monotonic(), None, None
            while time.monotonic() - started < 1800:
                with engine.connect() as conn:
                    status, finished, cached = conn.execute(query, {"id": job["id"]}).first()
                if ended_at is None:
                    if status in JOB_ENDED and finished:
                        ended_at = time.monotonic()
                    else:
                        rss_before = status_mb(pid, "VmRSS")
                if ended_at is not None and cached:
                    figures["comparison_s"] = round(time.monotonic() - ended_at, 1)
                    break
                time.sleep(0.1)
            figures.update(
                job_status=status,
                job_s=round((ended_at or time.monotonic()) - started, 1),
                worker_rss_before_end_mb=round(rss_before or 0, 1),
                worker_peak_mb=round(status_mb(pid, "VmHWM"), 1),
                worker_rss_after_mb=round(status_mb(pid, "VmRSS"), 1),
                loadavg=os.getloadavg()[0],
            )
            engine.dispose()
    finally:
        for provider in providers:
            provider.stop()
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
