"""App-level error handlers: JSON under /api/, HTML pages elsewhere (STYLE: Errors)."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from jinja2 import TemplateNotFound
from werkzeug.exceptions import HTTPException, SecurityError

from portal.db import db
from portal.errors import ApiError, DomainError, error_body

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "too_large",
    415: "not_json",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
# The web edge's one mapping of the domain's refusals to HTTP statuses.
STATUS_OF_KIND = {
    "invalid": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limited": 429,
}


def http_status(exc: DomainError) -> int:
    """The HTTP status a refusal is answered with."""
    return exc.status if isinstance(exc, ApiError) else STATUS_OF_KIND[exc.kind]


def register(app: Flask) -> None:
    """Installs the handlers for API refusals, HTTP errors and unexpected failures."""
    app.register_error_handler(DomainError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(SecurityError, handle_untrusted_host)
    app.register_error_handler(Exception, handle_unexpected)


def wants_json() -> bool:
    """True for API paths, whose errors are always JSON."""
    return request.path.startswith("/api/") or request.path in ("/health", "/ready")


def handle_api_error(exc: DomainError):
    """Renders a domain refusal in the shape its caller reads."""
    db.session.rollback()
    status = http_status(exc)
    if wants_json():
        return jsonify(exc.body()), status, getattr(exc, "headers", {})
    return render_error(status, exc.message)


def handle_http_error(exc: HTTPException):
    """Renders 404, 405, 413 and friends as JSON or as a page."""
    status = exc.code or 500
    code = HTTP_CODES.get(status, "http_error")
    message = exc.description or exc.name
    if status == 413:
        message = "the body is over the size limit"
    # Keep what the exception says besides its body, such as a 405's `Allow` (RFC 9110).
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    if wants_json():
        return jsonify(error_body(code, message)), status, headers
    page, status = render_error(status, message)
    return page, status, headers


def handle_untrusted_host(exc: SecurityError):
    """Refuses a Host outside BEACON_TRUSTED_HOSTS plainly: no page, no link built from it."""
    return jsonify(error_body("untrusted_host", "the Host header names no site served here")), 400


def handle_unexpected(exc: Exception):
    """Rolls back and answers 500 without leaking internals."""
    db.session.rollback()
    import logging

    logging.getLogger("portal").exception("unhandled error on %s", request.path)
    if wants_json():
        return jsonify(error_body("internal_error", "the server failed; the error is logged")), 500
    return render_error(500, "The server failed; the error is logged.")


def render_error(status: int, message: str):
    """Renders errors/<status>.html (or the generic page) in the site layout."""
    context = {"status": status, "message": message}
    for name in (f"errors/{status}.html", "errors/error.html"):
        try:
            return render_template(name, **context), status
        except TemplateNotFound:
            continue
    return f"<!doctype html><title>{status}</title><h1>{status}</h1>", status
