"""Smoke test of scripts/bench.py: it runs end to end and prints its table. No timing is judged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.live_server import ROOT

pytestmark = pytest.mark.live

TIMEOUT_S = 240


def test_quick_overhead_prints_a_table(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench.py"),
            "--quick",
            "--db",
            "sqlite",
            "--only",
            "overhead",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "| figure | db | median | min | max | unit | runs | target | result |" in lines
    rows = [line for line in lines if line.startswith("| answers per second")]
    assert len(rows) == 1, result.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == "sqlite"
    assert float(cells[2]) > 0
    assert cells[5] == "answers/s"
    assert cells[7] == ">= 200"
    assert cells[8] in ("met", "MISSED")
    assert any(line.startswith("- cpu: ") for line in lines)

    doc = json.loads(out.read_text("utf-8"))
    assert [f["key"] for f in doc["figures"]] == ["overhead"]
    assert doc["quick"] is True
    assert doc["machine"]["sqlite"]


def test_unknown_section_is_refused():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--only", "nonsense"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown section" in result.stderr
