"""Layers, checked by folder (docs/architecture.md): the wings know nothing of HTTP, each wing
imports only the wings its docstring allows, the two blueprints never import each other, and
nothing in the package imports the test harness."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTAL = ROOT / "portal"
WINGS = (
    "intake",
    "engine",
    "providers",
    "compare",
    "judge",
    "provenance",
    "watch",
    "web",
    "cli",
)
# The wings each wing may import (besides the top-level modules every wing may use).
MAY_IMPORT = {
    "providers": set(),
    "compare": set(),
    "provenance": set(),
    "intake": {"engine"},  # engine.wake: a submission wakes this process's dispatcher
    "engine": {"providers", "compare", "provenance", "judge"},
    "judge": {"providers", "compare", "engine"},
    # A schedule's job is submitted through intake; changes read the comparison and the judge.
    "watch": {"intake", "engine", "compare", "judge"},
    "cli": {"intake", "engine", "providers", "compare", "judge", "provenance", "watch"},
    "web": {"intake", "engine", "providers", "compare", "judge", "provenance", "watch"},
}
# Top-level modules that build or serve the Flask app itself, and why they may import flask.
APP_PLUMBING = {
    "__init__.py": "create_app builds the app",
    "db.py": "Flask-SQLAlchemy's session is the one every wing uses",
    "settings.py": "settings.current() reads the running app's settings",
    "logs.py": "the request log hooks into the app",
}
# Top-level modules that read a wing's own start-up state, and which wings.
TOP_MAY_IMPORT = {
    "settings.py": {"intake", "provenance"},  # trusted keys, the signing key, the log origin
    # The [judge], [schedules], [watch] and [[witnesses]] tables are parsed by their wings' own
    # parsers.
    "config.py": {"judge", "watch", "provenance"},
    "models.py": {"judge"},  # a judgement's JSON says whether it agrees with the rules
}


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


def wing_of(path: Path) -> str | None:
    """The wing a package file belongs to, or None for a top-level module."""
    parts = path.relative_to(PORTAL).parts
    return parts[0] if len(parts) > 1 else None


def wings_imported(names: set[str]) -> set[str]:
    return {n.split(".")[1] for n in names if n.startswith("portal.") and n.split(".")[1] in WINGS}


def uses_flask(names: set[str]) -> bool:
    return any(n.split(".")[0] in ("flask", "flask_sqlalchemy", "flask_migrate") for n in names)


def test_every_wing_is_a_package_with_a_docstring_saying_what_it_may_import():
    for wing in WINGS:
        init = PORTAL / wing / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc, init


def test_only_the_web_edge_and_the_cli_know_http():
    for path in sorted(PORTAL.rglob("*.py")):
        wing = wing_of(path)
        if wing in ("web", "cli"):
            continue
        names = imported_names(path)
        assert "portal.errors.ApiError" not in names, path
        if wing is None and path.name in APP_PLUMBING:
            continue
        assert not uses_flask(names), path


def test_each_wing_imports_only_the_wings_it_may():
    for path in sorted(PORTAL.rglob("*.py")):
        wing = wing_of(path)
        others = wings_imported(imported_names(path)) - {wing}
        if wing is None:
            if path.name == "__init__.py":
                continue  # create_app wires the wings together
            allowed = TOP_MAY_IMPORT.get(path.name, set())
        else:
            allowed = MAY_IMPORT[wing]
        assert others <= allowed, f"{path} imports {sorted(others - allowed)}"


def test_the_two_blueprints_never_import_each_other():
    for name, other in (("pages", "portal.web.api"), ("api", "portal.web.pages")):
        for path in sorted((PORTAL / "web" / name).glob("*.py")):
            assert not {n for n in imported_names(path) if n.startswith(other)}, path


def test_the_package_never_imports_the_test_harness():
    for path in sorted(PORTAL.rglob("*.py")):
        assert not {n for n in imported_names(path) if n.startswith("tests")}, path
