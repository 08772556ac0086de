"""Layers: the domain raises domain exceptions and knows nothing of HTTP; the HTML blueprint
does not import the JSON one; nothing in the package imports the test harness."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTAL = ROOT / "portal"
DOMAIN = [
    PORTAL / "intake.py",
    PORTAL / "jobspec.py",
    *sorted((PORTAL / "engine").glob("*.py")),
    *sorted((PORTAL / "compare").glob("*.py")),
    *sorted((PORTAL / "providers").glob("*.py")),
]


def imported_names(path: Path) -> set[str]:
    """Every module and name a file imports, dotted (`portal.errors.ApiError`, `flask`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                base = ".".join([*package, *([base] if base else [])])
            names |= {f"{base}.{alias.name}" for alias in node.names} | {base}
    return names


def test_domain_modules_raise_no_http_error_and_import_no_web_framework():
    for path in DOMAIN:
        names = imported_names(path)
        assert "portal.errors.ApiError" not in names, path
        assert not {n for n in names if n == "flask" or n.startswith("flask.")}, path
        assert not {n for n in names if n.startswith(("portal.api", "portal.pages"))}, path


def test_the_html_blueprint_does_not_import_the_json_one():
    assert not {n for n in imported_names(PORTAL / "pages.py") if n.startswith("portal.api")}


def test_the_package_never_imports_the_test_harness():
    for path in sorted(PORTAL.rglob("*.py")):
        assert not {n for n in imported_names(path) if n.startswith("tests")}, path
