"""Operator endpoints: /health (is this process alive?), /ready (may it take traffic?), /metrics.

Outside the API and page blueprints: platforms probe these fixed paths, and /health must stay
cheap."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal.db import db
from portal.engine import metrics
from portal.provenance import waiting
from portal.times import iso

bp = Blueprint("ops", __name__)


@bp.get("/health")
def get_health():
    """Reports whether the app and its database answer."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(
            status="degraded", database="unreachable", version=current_app.config["BEACON_VERSION"]
        ), 503
    return jsonify(status="ok", database="ok", version=current_app.config["BEACON_VERSION"])


@bp.get("/ready")
def get_ready():
    """Answers 200 when the database answers, migrations are at head and the configuration
    loaded; otherwise 503 naming each problem."""
    checks, problems = {}, []
    settings = current_app.extensions.get("beacon")
    if settings is None or not settings.config.regions:
        checks["configuration"] = "not loaded"
        problems.append("the configuration did not load")
    else:
        checks["configuration"] = "ok"
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        checks["database"] = "unreachable"
        checks["migrations"] = "unknown"
        problems.append("the database does not answer")
    else:
        checks["database"] = "ok"
        pending = pending_migrations()
        checks["migrations"] = "ok" if not pending else "pending: " + ", ".join(pending)
        if pending:
            problems.append(
                "migrations not applied: "
                + ", ".join(pending)
                + " (run the release step: flask --app wsgi db upgrade)"
            )
    if checks["database"] == "ok":
        log_check, log_problem = transparency_log()
        checks["log"] = log_check
        if log_problem:
            problems.append(log_problem)
    if problems:
        message = "; ".join(problems)
        body = {"status": "not ready", **checks, "error": {"code": "not_ready", "message": message}}
        return jsonify(body), 503
    return jsonify(status="ready", **checks)


def transparency_log() -> tuple[str, str | None]:
    """Says whether receipts wait for the log (SPEC 9): the check's value and any problem."""
    try:
        found = waiting.summary()
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()  # e.g. migrations pending: that problem is named already
        return "unknown", None
    if not found["overdue"]:
        return ("ok" if not found["waiting"] else f"{found['waiting']} receipt(s) waiting"), None
    oldest = iso(found["oldest"], "seconds")
    check = f"{found['waiting']} receipt(s) waiting, the oldest since {oldest}"
    problem = (
        f"the transparency log takes no appends: {found['overdue']} receipt(s) have waited over "
        f"{waiting.READY_AFTER_S} s (the oldest since {oldest}); the sweep appends them once it "
        "does (see beacon_log_append_failures_total and the server log)"
    )
    return check, problem


def pending_migrations() -> list[str]:
    """Names the migrations (revision and title) not yet applied to the database."""
    script = current_app.extensions.get("beacon_migrations")
    if script is None:
        script = ScriptDirectory(current_app.extensions["migrate"].directory)
        current_app.extensions["beacon_migrations"] = script
    try:
        applied = tuple(db.session.scalars(text("SELECT version_num FROM alembic_version")))
        db.session.commit()
    except SQLAlchemyError:
        # No alembic_version table: nothing was ever applied.
        db.session.rollback()
        applied = ()
    heads = script.get_heads()
    if set(heads) <= set(applied):
        return []
    pending = script.iterate_revisions(heads, applied or "base")
    names = [f"{rev.revision} ({(rev.doc or '').splitlines()[0]})" for rev in pending]
    return list(reversed(names))


@bp.get("/metrics")
def get_metrics():
    """Serves the Prometheus text: database counts plus this server's processes' metrics."""
    try:
        body = metrics.exposition()
    except SQLAlchemyError:
        db.session.rollback()
        return Response("# the database does not answer\n", 503, mimetype="text/plain")
    return Response(body, headers={"Content-Type": metrics.CONTENT_TYPE})
