"""What every section of scripts/bench.py shares: sizes, figures and their targets, the bench
configuration and jobs, loopback providers, and the processes' CPU and memory from /proc."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.loopback import LoopbackProvider  # noqa: E402
from tests.support.specs import job_spec  # noqa: E402

LATENCY_S = 0.050
POOL = 9
REGION_IDS = [f"region-{i:02d}" for i in range(1, 11)]
MODEL_IDS = [f"model-{i:02d}" for i in range(1, 11)]
JOB_TIMEOUT_S = 600.0
TICKS = os.sysconf("SC_CLK_TCK")


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
    wide_job: tuple[int, int, int]
    scale_questions: tuple[int, ...]
    scaleout_job: tuple[int, int, int]
    scaleout_workers: tuple[int, ...]
    page_requests: int


FULL = Sizes(
    runs=3,
    efficiency_questions=100,
    overhead_questions=100,
    pool_questions=20,
    big_job=(10, 10, 10),
    small_requests=100,
    big_requests=30,
    wide_job=(10, 10, 20),
    scale_questions=(10, 30, 100),
    scaleout_job=(10, 10, 20),
    scaleout_workers=(1, 2, 4),
    page_requests=10,
)
QUICK = Sizes(
    runs=1,
    efficiency_questions=20,
    overhead_questions=20,
    pool_questions=5,
    big_job=(5, 5, 4),
    small_requests=10,
    big_requests=5,
    wide_job=(5, 4, 4),
    scale_questions=(1, 3),
    scaleout_job=(5, 5, 4),
    scaleout_workers=(1, 2),
    page_requests=3,
)


@dataclass(frozen=True)
class Target:
    """A figure's target: its median must be `op` (">=" or "<=") `bound`."""

    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"

    def meets(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def by(self, value: float) -> str:
        """How far the value is from the bound, on the side that says met or missed."""
        gap = value - self.bound if self.op == ">=" else self.bound - value
        share = f" ({abs(gap) / self.bound * 100:.0f} %)" if self.bound else ""
        size = f"{abs(gap):.0f}" if abs(gap) >= 100 else f"{abs(gap):.3g}"
        return f"{'+' if gap >= 0 else '-'}{size}{share}"


@dataclass
class Figure:
    """One row of the table: the values of every run, and the target they are judged by."""

    key: str
    label: str
    db: str
    unit: str
    values: list[float] = field(default_factory=list)
    target: Target | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def result(self) -> str:
        if self.target is None or not self.values:
            return ""
        return "met" if self.target.meets(self.median) else "MISSED"

    @property
    def by(self) -> str:
        return self.target.by(self.median) if self.target and self.values else ""

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
            "target": str(self.target) if self.target else None,
            "result": self.result or None,
            "by": self.by or None,
            "note": self.note or None,
        }


class Section:
    """A benchmark section on one database: it adds figures and says what it is doing."""

    def __init__(self, db: str, dbs, workdir: Path, sizes: Sizes, options: dict):
        self.db = db
        self.dbs = dbs
        self.workdir = workdir
        self.sizes = sizes
        self.options = options
        self.figures: list[Figure] = []

    def figure(self, key: str, label: str, unit: str, **kwargs) -> Figure:
        """Returns the figure `key` of this database, made on first use."""
        for fig in self.figures:
            if fig.key == key:
                return fig
        fig = Figure(key=key, label=label, db=self.db, unit=unit, **kwargs)
        self.figures.append(fig)
        return fig

    def say(self, message: str) -> None:
        print(f"  [{self.db}] {message}", file=sys.stderr, flush=True)


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
        "max_answers = 10000",
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


def make_spec(n_models: int, n_regions: int, n_questions: int) -> dict:
    """Returns an unsigned n_models x n_regions x n_questions JobSpec of the bench's models,
    regions and literal prompts."""
    return spec_for(MODEL_IDS[:n_models], REGION_IDS[:n_regions], prompts(n_questions))


def spec_for(models: list[str], regions: list[str], questions: list[str]) -> dict:
    """Returns an unsigned JobSpec with an id unique to this run (the shared builder's)."""
    global _job_counter
    _job_counter += 1
    job_id = f"bench-{os.getpid()}-{int(time.time())}-{_job_counter}"
    return job_spec(models, regions, questions, job_id=job_id, name="bench")


@contextlib.contextmanager
def providers(count: int, latency_s: float) -> Iterator[list[LoopbackProvider]]:
    """Starts `count` loopback providers (one per region) in this process's threads."""
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


def epoch(iso_time: str | None) -> float | None:
    """Returns an API time (ISO-8601, `Z`) as seconds since the epoch, as time.time() counts."""
    if iso_time is None:
        return None
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- processes ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    # After the command's closing parenthesis: state is field 0, ppid 1, pgrp 2, utime 11.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def pid_cpu_s(pid: int, children: bool = False) -> float:
    """Returns a process's user + system CPU seconds (and its waited-for children's)."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def group_pids(pgid: int) -> list[int]:
    """Returns every live process of a process group."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            if int(_stat_fields(int(entry.name))[2]) == pgid:
                found.append(int(entry.name))
    return found


def groups_cpu_s(pgids: list[int]) -> float:
    """Returns the CPU seconds of every process of these groups, their reaped children's too."""
    total = 0.0
    for pgid in pgids:
        for pid in group_pids(pgid):
            with contextlib.suppress(OSError, IndexError):
                total += pid_cpu_s(pid, children=True)
    return total


def children_of(pid: int) -> list[int]:
    """Returns a process's direct children."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory_mb(pid: int, name: str = "VmHWM") -> float:
    """Returns a process's resident memory from /proc/<pid>/status (VmHWM: its peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {name} in /proc/{pid}/status")
