"""Logging: one JSON object per line in production, readable text in development.

In production every request logs one line (method, path, status, duration, request id; the id
is also sent back as `X-Request-ID`) and every execution state change one line (job, model,
region, status). Lines carry only the fields named here: never headers, bodies or settings,
so no key, token or `SECRET_KEY` can reach a log (tests/test_logs.py greps for them). And in
case one arrives inside a message or a traceback anyway (a provider's error quoting the key it
was sent), the handler's `redact.SecretFilter` hides every secret the portal knows, in
development and production alike; gunicorn's own handlers get the same filter
(gunicorn.conf.py).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, g, request

from portal import redact

log = logging.getLogger("portal.requests")
state_log = logging.getLogger("portal.executions")

# Fields a record may carry into a JSON line (given with `extra=`).
FIELDS = (
    "event",
    "method",
    "path",
    "status",
    "duration_ms",
    "request_id",
    "job",
    "model",
    "region",
    "execution",
)
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, known fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info or record.exc_text:
            # exc_text first: a SecretFilter may have scrubbed it.
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _BeaconHandler(logging.StreamHandler):
    """The portal's own handler on the root logger, replaced (never doubled) on each app."""


def configure(env: str, secrets: redact.Secrets | None = None) -> None:
    """Sends INFO and above to stderr: JSON lines in production, text in development, with
    every one of `secrets` hidden."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _BeaconHandler)]:
        root.removeHandler(handler)
    handler = _BeaconHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if env == "production" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(redact.SecretFilter(secrets or redact.Secrets()))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def hide_secrets(logger: logging.Logger, secrets: redact.Secrets) -> None:
    """Puts a SecretFilter on each of `logger`'s handlers (gunicorn's, which the app does not
    configure), once."""
    for handler in logger.handlers:
        if not any(isinstance(f, redact.SecretFilter) for f in handler.filters):
            handler.addFilter(redact.SecretFilter(secrets))


def init_app(app: Flask, env: str, secrets: redact.Secrets | None = None) -> None:
    """Gives every request an id (sent back as X-Request-ID); logs each one in production."""
    if not app.testing:
        configure(env, secrets)
    production = env == "production"

    @app.before_request
    def _start_request() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        if production:
            started = g.get("request_started", time.perf_counter())
            duration = round((time.perf_counter() - started) * 1000, 1)
            log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "event": "request",
                    "method": request.method,
                    # The path only: a query string may carry a token.
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration,
                    "request_id": request_id,
                },
            )
        return response


def execution_state(labels: dict, status: str) -> None:
    """Logs one execution's change of status with its id, job, model and region."""
    state_log.info(
        "execution of %s by %s in %s is %s",
        labels["job"],
        labels["model"],
        labels["region"],
        status,
        extra={"event": "execution", "status": status, **labels},
    )
