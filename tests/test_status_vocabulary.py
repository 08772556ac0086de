"""The status vocabulary is defined once, in portal.status: no other module, script or test
spells out a list of statuses, and the API's filters and its OpenAPI document use the enums."""

from __future__ import annotations

import ast
from pathlib import Path

from portal.status import (
    ACTIVE,
    FINISHED,
    JOB_ENDED,
    JOB_STATUSES,
    RUN_STATUSES,
    JobStatus,
    RunStatus,
    is_active,
    is_classified,
    job_ended,
)
from portal.web.api import openapi

ROOT = Path(__file__).resolve().parents[1]
WORDS = set(JOB_STATUSES) | set(RUN_STATUSES)
HOME = ROOT / "portal" / "status.py"

VERIFIER = ROOT / "scripts" / "verify_receipt.py"


def _status_strings(nodes) -> set[str]:
    return {
        n.value
        for n in nodes
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in WORDS
    }


def literal_status_lists(path: Path, base: Path = ROOT) -> list[str]:
    """Returns `file:line` of every tuple, list, set or dict literal naming two statuses or more."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = node.keys
        else:
            continue
        if len(_status_strings(items)) >= 2:
            found.append(f"{path.relative_to(base)}:{node.lineno}")
    return found


def test_no_status_list_outside_the_enums():
    files = [
        p
        for folder in ("portal", "scripts", "tests")
        for p in sorted((ROOT / folder).rglob("*.py"))
        # The receipt verifier reads no portal code by design (a third party runs it alone).
        if p not in (HOME, VERIFIER) and "__pycache__" not in p.parts
    ]
    files.append(ROOT / "gunicorn.conf.py")
    assert [hit for p in files for hit in literal_status_lists(p)] == []


def test_the_check_finds_a_status_list(tmp_path):
    # The check itself must see what it forbids, in every literal form.
    sample = tmp_path / "sample.py"
    sample.write_text(
        'A = ("queued", "running")\nB = ["completed", "failed"]\n'
        'C = {"partial": 1, "cancelled": 2}\nD = {"queued", "failed"}\nE = ("queued",)\n'
    )
    assert literal_status_lists(sample, tmp_path) == [f"sample.py:{n}" for n in (1, 2, 3, 4)]


def test_predicates_and_groups_agree_with_the_enums():
    assert set(ACTIVE) | set(FINISHED) == set(RunStatus)
    assert set(JOB_ENDED) == set(JobStatus) - set(ACTIVE)
    queued_or_running = {RunStatus.QUEUED, RunStatus.RUNNING}
    assert [is_active(s) for s in RunStatus] == [s in queued_or_running for s in RUN_STATUSES]
    assert job_ended("partial") and not job_ended("running") and not job_ended(None)
    assert is_classified("failed") and not is_classified("cancelled")
    assert JobStatus.PARTIAL == "partial" and f"{RunStatus.QUEUED}" == "queued"


def test_openapi_status_enums_are_the_vocabulary():
    doc = openapi.document("test")
    schemas = doc["components"]["schemas"]
    assert schemas["Job"]["properties"]["status"]["enum"] == list(JOB_STATUSES)
    assert schemas["Execution"]["properties"]["status"]["enum"] == list(RUN_STATUSES)
    assert set(schemas["Counts"]["properties"]) == {"total", *RUN_STATUSES}
