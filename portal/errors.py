"""Refusals: the domain's exceptions, the web edge's `ApiError`, and the one JSON error shape.

Domain modules (intake, jobspec, engine.jobs, compare.report) raise a `DomainError` subclass:
a stable code, a readable message and the fields concerned, and a `kind`, never an HTTP status.
The web edge (`portal.views_errors`) maps the kind to a status and renders
`{"error": {"code", "message", "fields"?}}` or an error page; the CLI prints the message.
`ApiError` is for refusals only the web edge makes (body size, content type, rate limit).
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal with a stable code, a readable message and the fields it concerns."""

    kind = "invalid"

    def __init__(self, code: str, message: str, fields: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.fields = code, message, fields

    def body(self) -> dict:
        """Returns the error document `{"error": {"code", "message", "fields"?}}`."""
        return error_body(self.code, self.message, self.fields)


class Invalid(DomainError):
    """The input breaks a rule (a malformed spec, an unknown baseline region)."""

    kind = "invalid"


class Unauthenticated(DomainError):
    """The spec carries no signature, or one that does not verify."""

    kind = "unauthenticated"


class Forbidden(DomainError):
    """The signature verifies but the key may not do this."""

    kind = "forbidden"


class NotFound(DomainError):
    """The thing asked for does not exist."""

    kind = "not_found"


class Conflict(DomainError):
    """The request clashes with the stored state (an ended job, a reused nonce or id)."""

    kind = "conflict"


class RateLimited(DomainError):
    """Too many requests from one client inside the limit's window."""

    kind = "rate_limited"

    def __init__(self, code: str, message: str, retry_after_s: int):
        super().__init__(code, message)
        self.headers = {"Retry-After": str(retry_after_s)}


class ApiError(DomainError):
    """A refusal made by the web edge itself, with its HTTP status."""

    kind = "http"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(code, message, fields)
        self.status = status
        self.headers = headers or {}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """Builds the error document every API refusal uses."""
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}
