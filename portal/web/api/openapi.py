"""The OpenAPI 3.1 document of /api/v1, kept beside the routes it describes."""

from __future__ import annotations

import copy

from portal.db import MAX_INT32
from portal.web.api import openapi_provenance as provenance_openapi
from portal.web.api import openapi_watch as watch_openapi
from portal.web.api.openapi_parts import (
    BOOL,
    INT,
    STR,
    errors,
    json_response,
    listing,
    obj,
    path_param,
    query,
    ref,
)
from portal.web.api.openapi_schemas import LANGUAGE, SCHEMAS, STATUS_ANSWER, STATUS_JOB
from portal.web.paging import DEFAULT_LIMIT, DIGITS, MAX_LIMIT, PAIR


def any_status(status: dict) -> dict:
    """Returns a status filter where the empty string, as a form sends it, means any status."""
    return {**status, "enum": [*status["enum"], ""]}


LIMIT = query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    f"page size ({DEFAULT_LIMIT})",
)
CURSOR = query("cursor", {"type": "string", "pattern": f"^{DIGITS.pattern}$"}, "`next` of a page")
JOB_ID = path_param("job_id", {"type": "string"})
BASELINE = query("baseline", STR, "region to diff against (default: the spec's first region)")


def paths() -> dict:
    """Returns every route of the API and what it answers."""
    return {
        "/health": {
            "get": {
                "operationId": "get_health",
                "summary": "Liveness and database check",
                "responses": {
                    "200": json_response(
                        "healthy", obj({"status": STR, "database": STR, "version": STR})
                    ),
                    "503": json_response(
                        "database unreachable",
                        obj({"status": STR, "database": STR, "version": STR}),
                    ),
                },
            }
        },
        "/api/v1/jobs": {
            "post": {
                "operationId": "create_job",
                "summary": "Submit a signed JobSpec",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("JobSpec")}},
                },
                "responses": {
                    "202": json_response(
                        "accepted and queued", obj({"job": ref("Job"), "idempotent": BOOL})
                    ),
                    "200": json_response(
                        "the same signed bytes were already accepted",
                        obj({"job": ref("Job"), "idempotent": BOOL}),
                    ),
                    **errors(400, 401, 403, 409, 413, 415, 429),
                },
            },
            "get": {
                "operationId": "list_jobs",
                "summary": "List jobs, newest first",
                "parameters": [
                    query("status", any_status(STATUS_JOB), "only jobs in this status"),
                    LIMIT,
                    CURSOR,
                ],
                "responses": {
                    "200": json_response("a page of jobs", listing(ref("Job"))),
                    **errors(400),
                },
            },
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "get_job",
                "summary": "One job with counts, executions and answers",
                "parameters": [JOB_ID],
                "responses": {
                    "200": json_response("the job", obj({"job": ref("Job")})),
                    **errors(404),
                },
            }
        },
        "/api/v1/jobs/{job_id}/answers": {
            "get": {
                "operationId": "list_job_answers",
                "summary": "A job's answers a page at a time, for jobs too big to inline",
                "parameters": [JOB_ID, LIMIT, CURSOR],
                "responses": {
                    "200": json_response(
                        "a page of answers",
                        listing({**ref("Answer"), "description": "with model_id and region"}),
                    ),
                    **errors(400, 404),
                },
            }
        },
        "/api/v1/jobs/{job_id}/cancel": {
            "post": {
                "operationId": "cancel_job",
                "summary": "Cancel a job: queued work stops now, in-flight calls when they return",
                "parameters": [JOB_ID],
                "security": [{"admin": []}],
                "responses": {
                    "200": json_response("the job, now cancelled", obj({"job": ref("Job")})),
                    **errors(401, 403, 404, 409, 429),
                },
            }
        },
        "/api/v1/jobs/{job_id}/retry": {
            "post": {
                "operationId": "retry_job",
                "summary": "Queue an ended job's failed answers again, with a new deadline",
                "parameters": [JOB_ID],
                "security": [{"admin": []}],
                "responses": {
                    "200": json_response(
                        "the job, queued again",
                        obj({"job": ref("Job"), "requeued": INT}),
                    ),
                    **errors(401, 403, 404, 409, 429),
                },
            }
        },
        "/api/v1/jobs/{job_id}/comparison": {
            "get": {
                "operationId": "get_comparison",
                "summary": "Per model and question: classes, similarity, word diffs, divergence",
                "parameters": [JOB_ID, BASELINE],
                "responses": {
                    "200": json_response(
                        "the comparison (docs/comparison.md)",
                        obj({"comparison": ref("Comparison")}),
                    ),
                    **errors(400, 404),
                },
            }
        },
        "/api/v1/jobs/{job_id}/summary": {
            "get": {
                "operationId": "get_summary",
                "summary": "The machine-written summary of the job, citing answer ids",
                "parameters": [JOB_ID],
                "responses": {
                    "200": json_response("the summary", obj({"summary": ref("Summary")})),
                    **errors(404),
                },
            }
        },
        "/api/v1/jobs/{job_id}/comparison.csv": {
            "get": {
                "operationId": "get_comparison_csv",
                "summary": "The comparison as CSV, one row per answer",
                "parameters": [JOB_ID, BASELINE],
                "responses": {
                    "200": {
                        "description": "CSV with the columns of docs/comparison.md",
                        "content": {"text/csv": {"schema": STR}},
                    },
                    **errors(400, 404),
                },
            }
        },
        "/api/v1/executions": {
            "get": {
                "operationId": "list_executions",
                "summary": "List executions with filters",
                "parameters": [
                    query("job_id", STR, "job id"),
                    query("model_id", STR, "model id"),
                    query("region", STR, "region id"),
                    query("status", any_status(STATUS_ANSWER), "execution status"),
                    LIMIT,
                    CURSOR,
                ],
                "responses": {
                    "200": json_response("a page of executions", listing(ref("Execution"))),
                    **errors(400),
                },
            }
        },
        "/api/v1/executions/job/{job_id}": {
            "get": {
                "operationId": "list_job_executions",
                "summary": "Every execution of one job",
                "parameters": [JOB_ID],
                "responses": {
                    "200": json_response("the executions", listing(ref("Execution"))),
                    **errors(400, 404),
                },
            }
        },
        "/api/v1/executions/{execution_id}": {
            "get": {
                "operationId": "get_execution",
                "summary": "One execution with its answers",
                "parameters": [path_param("execution_id", {"type": "integer", "minimum": 0})],
                "responses": {
                    "200": json_response("the execution", obj({"execution": ref("Execution")})),
                    **errors(404),
                },
            }
        },
        "/api/v1/models": {
            "get": {
                "operationId": "list_models",
                "summary": "Configured models",
                "responses": {"200": json_response("models", listing(ref("Model"))), **errors(400)},
            }
        },
        "/api/v1/regions": {
            "get": {
                "operationId": "list_regions",
                "summary": "Configured regions",
                "responses": {
                    "200": json_response("regions", listing(ref("Region"))),
                    **errors(400),
                },
            }
        },
        "/api/v1/questions": {
            "get": {
                "operationId": "list_questions",
                "summary": "The question bank",
                "responses": {
                    "200": json_response("questions", listing(ref("Question"))),
                    **errors(400),
                },
            }
        },
        "/api/v1/questions/{question_id}/history": {
            "get": {
                "operationId": "question_history",
                "summary": "A question's answers across jobs, newest job first, changes marked",
                "parameters": [
                    path_param("question_id", {"type": "string"}),
                    query("model_id", STR, "only this model"),
                    query("region", STR, "only this region"),
                    query("language", LANGUAGE, "only answers asked in this language"),
                    LIMIT,
                    query(
                        "cursor",
                        {"type": "string", "pattern": f"^{PAIR.pattern}$"},
                        "`next` of a page",
                    ),
                ],
                "responses": {
                    "200": json_response("a page of answers", listing(ref("HistoryItem"))),
                    **errors(400, 404),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "get_openapi",
                "summary": "This document",
                "responses": {"200": json_response("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }


# Text a URL may carry: anything but NUL, which no database stores (portal/web/url_text.py).
NO_NUL = "^[^\\x00]*$"


def with_url_refusals(paths: dict) -> dict:
    """Adds what portal/web/url_text.py refuses on every route to every operation: 400 for a
    query name or value no database stores, and, where the path has parameters, 404 for such a
    path segment or a path number past its INTEGER column. Each free-text parameter says it
    holds no NUL, and each path number its `maximum`."""
    paths = copy.deepcopy(paths)
    for operations in paths.values():
        for operation in operations.values():
            responses = operation["responses"]
            responses.setdefault("400", errors(400)["400"])
            parameters = operation.get("parameters", [])
            if any(p["in"] == "path" for p in parameters):
                responses.setdefault("404", errors(404)["404"])
            for parameter in parameters:
                schema = parameter["schema"]
                if schema.get("type") == "integer" and parameter["in"] == "path":
                    parameter["schema"] = {**schema, "maximum": MAX_INT32}
                elif schema.get("type") == "string" and not {"pattern", "enum"} & set(schema):
                    parameter["schema"] = {**schema, "pattern": NO_NUL}
    return paths


def document(version: str) -> dict:
    """Returns the whole OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Beacon portal API",
            "version": version,
            "description": "Submit signed JobSpecs and compare how one model answers "
            'across regions. Errors: {"error": {"code", "message"}}.',
        },
        "paths": with_url_refusals({**paths(), **provenance_openapi.PATHS, **watch_openapi.PATHS}),
        "components": {
            "schemas": {**SCHEMAS, **provenance_openapi.SCHEMAS, **watch_openapi.SCHEMAS},
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "BEACON_ADMIN_TOKEN"}
            },
        },
    }
