"""Where the wall time between two calls of one execution goes, and a profile of the serving
worker during a job, for scripts/bench.py (`--profile DIR`).

The breakdown joins two records of every call: the loopback provider's (when the request
arrived, when its answer was written: this process's clock) and the portal's own (the answer's
`started_at` and `finished_at` through the API: when it began and ended the HTTP exchange).
For answers i and i+1 of one execution (questions asked in order):

    send      provider's arrival of i - portal's started_at of i
    provider  provider's answer of i - its arrival (the latency it was told to sleep)
    receive   portal's finished_at of i - provider's answer of i
    between   portal's started_at of i+1 - its finished_at of i (storing i, starting i+1)
    gap       provider's arrival of i+1 - its answer of i (send + receive + between)

The API gives milliseconds; each part is a median (and a mean) over every pair of the job.

The profile: gunicorn starts with a bench-only configuration (written into the bench's temporary
folder, never into the project) that runs the project's `gunicorn.conf.py` and adds to its
`post_worker_init` a greenlet that turns cProfile on while a flag file exists, and writes
`worker-<pid>.pstats` when the flag goes away.
"""

from __future__ import annotations

import io
import json
import pstats
import statistics
import time
from pathlib import Path

from bench_common import REGION_IDS, ROOT, epoch

PARTS = ("send", "provider", "receive", "between", "gap")

PROFILE_CONFIG = '''"""Bench-only gunicorn settings: the project's, cProfile while a flag exists."""

import os
import runpy

_BASE = runpy.run_path({base!r})
globals().update({{k: v for k, v in _BASE.items() if not k.startswith("__")}})
_FLAGS = {flags!r}


def post_worker_init(worker):
    _BASE["post_worker_init"](worker)
    import cProfile

    import gevent

    def watch():
        profile = None
        flag = os.path.join(_FLAGS, "on")
        while True:
            if os.path.exists(flag) and profile is None:
                profile = cProfile.Profile()
                profile.enable()
            elif not os.path.exists(flag) and profile is not None:
                profile.disable()
                profile.dump_stats(os.path.join(_FLAGS, f"worker-{{os.getpid()}}.pstats"))
                profile = None
            gevent.sleep(0.02)

    gevent.spawn(watch)
'''


def profiling_config(workdir: Path) -> tuple[Path, Path]:
    """Writes the bench-only gunicorn configuration; returns it and its flag folder."""
    flags = workdir / "profile-flags"
    flags.mkdir(exist_ok=True)
    path = workdir / "bench_gunicorn_profile.conf.py"
    path.write_text(
        PROFILE_CONFIG.format(base=str(ROOT / "gunicorn.conf.py"), flags=str(flags)), "utf-8"
    )
    return path, flags


def profile_on(flags: Path) -> None:
    (flags / "on").touch()


def profile_off(flags: Path, workers: int, timeout: float = 30.0) -> list[Path]:
    """Removes the flag; returns the profiles the workers wrote."""
    (flags / "on").unlink()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(flags.glob("worker-*.pstats"))
        if len(found) >= workers:
            time.sleep(0.2)  # dump_stats writes the file in one go; let it finish
            return found
        time.sleep(0.05)
    raise RuntimeError("the workers wrote no profile")


def summary(path: Path, lines: int = 30) -> str:
    """Returns a profile's top functions by own time and by cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def pairs(answers: list[dict], providers_) -> list[dict]:
    """Returns one row per pair of consecutive calls of one execution, its parts in ms."""
    records: dict[tuple, dict] = {}
    for index, provider in enumerate(providers_):
        for call in list(provider.calls):
            # A retried call leaves several records; the last one is the answer kept.
            records[(REGION_IDS[index], call["model"], call["prompt"])] = call
    by_execution: dict[tuple, list[dict]] = {}
    for answer in answers:
        by_execution.setdefault((answer["model_id"], answer["region"]), []).append(answer)
    rows = []
    for (model, region), found in by_execution.items():
        found.sort(key=lambda a: a["question_index"])
        for this, after in zip(found, found[1:], strict=False):
            call = records.get((region, _served(this, model), this["prompt"]))
            nxt = records.get((region, _served(after, model), after["prompt"]))
            if call is None or nxt is None or call["finished"] is None:
                continue
            started, ended = epoch(this["started_at"]), epoch(this["finished_at"])
            following = epoch(after["started_at"])
            ms = {
                "send": call["started"] - started,
                "provider": call["finished"] - call["started"],
                "receive": ended - call["finished"],
                "between": following - ended,
                "gap": nxt["started"] - call["finished"],
            }
            rows.append({k: v * 1000 for k, v in ms.items()})
    return rows


def _served(answer: dict, model: str) -> str:
    return answer.get("provider_model") or model


def describe(rows: list[dict]) -> dict:
    """Returns each part's median and mean in ms, and the share of the wall time the gaps
    take (gaps over whole steps, a step being one call and the gap after it)."""
    if not rows:
        return {}
    doc = {
        part: {
            "median_ms": round(statistics.median(r[part] for r in rows), 2),
            "mean_ms": round(statistics.fmean(r[part] for r in rows), 2),
        }
        for part in PARTS
    }
    gaps = sum(r["gap"] for r in rows)
    calls = sum(r["provider"] for r in rows)
    doc["pairs"] = len(rows)
    doc["outside_provider_share"] = round(gaps / (gaps + calls), 3)
    return doc


def write(directory: Path, name: str, doc: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    return path


def text(doc: dict) -> str:
    """Returns the breakdown as a few lines for the console."""
    if not doc:
        return "no pair of calls to break down"
    lines = [f"between two calls of one execution ({doc['pairs']} pairs), ms:"]
    for part in PARTS:
        lines.append(
            f"  {part:9} median {doc[part]['median_ms']:7.2f}   mean {doc[part]['mean_ms']:7.2f}"
        )
    lines.append(f"  outside the provider: {doc['outside_provider_share'] * 100:.0f} % of the time")
    return "\n".join(lines)
