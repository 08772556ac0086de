"""The one JSON error shape of the API, and the exception that carries it."""

from __future__ import annotations


class ApiError(Exception):
    """A refusal with an HTTP status, a stable code and a readable message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields
        self.headers = headers or {}

    def body(self) -> dict:
        """Returns the error document `{"error": {"code", "message", "fields"?}}`."""
        return error_body(self.code, self.message, self.fields)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """Builds the error document every API refusal uses."""
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}
