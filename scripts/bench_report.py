"""What scripts/bench.py prints: the machine the figures were taken on, and the tables."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
from pathlib import Path

from bench_common import Figure


def describe_machine(postgres_url: str | None) -> dict:
    """Returns the CPU, cores, memory, load and software versions the figures were taken on."""
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
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
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


def format_value(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.3f}"
    if unit in ("calls", "answers", "bytes"):
        return f"{value:.0f}"
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


HEADER = "| figure | db | median | min | max | unit | runs | target | result | by |"


def table(figures: list[Figure]) -> str:
    """Returns the results as a Markdown table, one row per figure and database."""
    rows = [HEADER, "|---|---|---:|---:|---:|---|---:|---|---|---|"]
    for f in figures:
        rows.append(
            f"| {f.label} | {f.db} | {format_value(f.median, f.unit)} | "
            f"{format_value(min(f.values), f.unit)} | {format_value(max(f.values), f.unit)} | "
            f"{f.unit} | {len(f.values)} | {f.target or ''} | {f.result} | {f.by} |"
        )
    return "\n".join(rows)


def side_by_side(figures: list[Figure], kinds: list[str]) -> str:
    """Returns the figures that have a target, each database's median side by side."""
    by_key: dict[str, dict[str, Figure]] = {}
    for f in figures:
        if f.target is not None:
            by_key.setdefault(f.key, {})[f.db] = f
    head = "| figure | target | " + " | ".join(kinds) + " |"
    rows = [head, "|---|---|" + "---|" * len(kinds)]
    for found in by_key.values():
        first = next(iter(found.values()))
        cells = []
        for kind in kinds:
            f = found.get(kind)
            cells.append(
                f"{format_value(f.median, f.unit)} {f.result}, {f.by}" if f else "not measured"
            )
        rows.append(f"| {first.label} | {first.target} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
