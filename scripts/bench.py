#!/usr/bin/env python
"""Benchmarks the portal through the real engine and the real app, and prints a results table.

Loopback providers (`tests.support.loopback.LoopbackProvider`, real HTTP on 127.0.0.1) stand in for
the regions; the portal runs as the Procfile starts it (the `release` line on a fresh database,
then the `web` line, bound to 127.0.0.1; the `worker` line for scale-out), a fresh server for
every measured job. Jobs are signed with a key generated for the run and trusted through
BEACON_TRUSTED_KEYS, and measured as a user sees them: from the submission request until the
job reads `completed` through the API, every process of the portal counted.

Sections (`--only NAME`, repeatable or comma-separated): efficiency, overhead, promptfoo,
pool, harness, latency, memory, calls, wide, scale, scaleout. What each figure means:
docs/benchmarks.md.

    .venv/bin/python scripts/bench.py --only efficiency,overhead,promptfoo --db both --runs 3
    .venv/bin/python scripts/bench.py --quick --db sqlite --only overhead
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Beside this script.
import bench_calls  # noqa: E402
import bench_report  # noqa: E402
from bench_common import FULL, QUICK, Figure, Section  # noqa: E402
from bench_engine import Engine  # noqa: E402
from bench_fanout import Fanout  # noqa: E402
from bench_harness import Harness  # noqa: E402
from bench_pages import Pages  # noqa: E402
from bench_scale import Scale  # noqa: E402
from bench_server import Databases  # noqa: E402

SECTIONS = (
    "efficiency",
    "overhead",
    "promptfoo",
    "pool",
    "harness",
    "latency",
    "memory",
    "calls",
    "wide",
    "scale",
    "scaleout",
)
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
CALLS = 3000


class Calls(Section):
    def run(self) -> None:
        """CPU per provider call for each wire format (scripts/bench_calls.py)."""
        count = CALLS if self.sizes.runs > 1 else CALLS // 3
        with bench_calls.loopback(ROOT) as url:
            for label, send in bench_calls.senders(url).items():
                fig = self.figure(f"calls:{label}", f"CPU per provider call, {label}", "us")
                for _ in range(self.sizes.runs):
                    fig.values.append(bench_calls.cpu_per_call(send, count))
                self.say(f"{label}: {fig.median:.0f} us per call")


def run_database(kind, kinds, sections, args, sizes, workdir: Path, failed: list[str]):
    """Runs the chosen sections on one database; returns their figures (those measured before
    a failure too, the failure said in `failed`)."""
    dbs = Databases(kind, workdir, args.postgres_url)
    options = {"poll_s": args.poll_ms / 1000, "profile": args.profile}
    made: list[Section] = []

    def section(cls):
        made.append(cls(kind, dbs, workdir, sizes, options))
        return made[-1]

    first = kind == kinds[0]
    try:
        if sections & {"efficiency", "overhead", "promptfoo", "pool"} or args.profile:
            section(Engine).run(sections)
        if "harness" in sections:
            section(Harness).run()
        if "calls" in sections and first:
            section(Calls).run()  # no database in a provider call: measured once
        if sections & {"latency", "memory"}:
            pages = section(Pages)
            if "latency" in sections:
                pages.latency()
            if "memory" in sections:
                # The local model's memory does not depend on the database: measured once.
                pages.memory(with_local_model=first)
        if "wide" in sections:
            section(Fanout).wide()
        if "scale" in sections:
            section(Scale).run()
        if "scaleout" in sections:
            if kind == "postgres":
                section(Fanout).scaleout()
            else:
                print(f"  [{kind}] scaleout runs on PostgreSQL only", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - what was measured before still counts
        traceback.print_exc()
        failed.append(f"{kind}: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        try:
            dbs.close()
        except Exception as exc:  # noqa: BLE001 - a database left behind is said, not fatal
            print(f"  [{kind}] could not drop the bench database: {exc}", file=sys.stderr)
    return [f for s in made for f in s.figures if f.values]


def parse(argv: list[str] | None):
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
        "--poll-ms",
        type=float,
        default=25.0,
        metavar="MS",
        help="how often a measured job's JSON is polled until it reads completed (default 25)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server's maintenance database, where the bench database is created",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile the worker during one 900-answer job per database, break its time "
        "between two calls down, and cProfile the 1,000-answer pages of `latency`, into DIR",
    )
    args = parser.parse_args(argv)
    sections = set(SECTIONS)
    if args.only:
        sections = {name.strip() for item in args.only for name in item.split(",") if name.strip()}
        unknown = sections - set(SECTIONS)
        if unknown:
            parser.error(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    return args, sections


def main(argv: list[str] | None = None) -> int:
    """Runs the chosen sections on the chosen databases and prints the tables."""
    args, sections = parse(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=max(1, args.runs))
    machine = bench_report.describe_machine(args.postgres_url if "postgres" in kinds else None)
    command = "scripts/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    figures: list[Figure] = []
    workdir = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    failed = []
    try:
        for kind in kinds:
            figures += run_database(kind, kinds, sections, args, sizes, workdir, failed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    order: dict[str, int] = {}
    for f in figures:
        order.setdefault(f.key, len(order))
    figures.sort(key=lambda f: (order[f.key], kinds.index(f.db)))
    print(f"Beacon benchmark: {command.strip()} ({elapsed:.0f} s)")
    print("\n".join(f"- {k}: {v}" for k, v in machine.items() if v is not None))
    print()
    print(bench_report.table(figures))
    if any(f.target for f in figures):
        print()
        print("Targets, medians side by side (after the comma: how far from the target):")
        print()
        print(bench_report.side_by_side(figures, kinds))
    missed = [f for f in figures if f.result == "MISSED"]
    print()
    print(f"{len(missed)} target(s) missed" if missed else "every target met")
    for problem in failed:
        print(f"NOT FINISHED, {problem}")
    if args.json:
        doc = {
            "command": command.strip(),
            "quick": args.quick,
            "seconds": round(elapsed, 1),
            "machine": machine,
            "figures": [f.as_dict() for f in figures],
            "failed": failed,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
