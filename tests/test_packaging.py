"""What users install: the wheel built from pyproject.toml ships the portal and nothing of the
test harness (the loopback provider and the process helpers live in tests/support)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[1]
FAKE_WORDS = ("loopback", "fake", "mock", "stub", "tests/", "support/")


def test_the_wheel_holds_the_portal_and_no_test_fake(tmp_path):
    # Built from a copy, so the build's own folders never land in the working tree.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".*cache*", "instance"
        ),
    )
    out = tmp_path / "dist"
    # With setuptools at hand the build needs no index; without it pip fetches the backend.
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *offline]
        + ["--disable-pip-version-check", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("beacon_portal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "portal/__init__.py" in modules
    for package in ("engine", "providers", "compare"):
        assert f"portal/{package}/__init__.py" in modules
    assert "portal/default_config.toml" in names
    shipped = [n for n in names if any(word in n.lower() for word in FAKE_WORDS)]
    assert shipped == []
    assert all(n.startswith(("portal/", "beacon_portal-")) for n in names), names
