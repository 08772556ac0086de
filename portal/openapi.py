"""The OpenAPI 3.1 document of /api/v1, kept beside the routes it describes."""

from __future__ import annotations

STR, INT, NUM, BOOL = (
    {"type": "string"},
    {"type": "integer"},
    {"type": "number"},
    {"type": "boolean"},
)
TIME = {"type": ["string", "null"], "format": "date-time"}


def nullable(schema: dict) -> dict:
    """Returns `schema` widened to admit null."""
    kind = schema["type"]
    return {**schema, "type": [kind, "null"] if isinstance(kind, str) else [*kind, "null"]}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


def listing(item: dict) -> dict:
    return obj({"items": {"type": "array", "items": item}, "next": nullable(STR)})


STATUS_ANSWER = {
    "type": "string",
    "enum": ["queued", "running", "completed", "failed", "cancelled"],
}
STATUS_JOB = {
    "type": "string",
    "enum": ["queued", "running", "completed", "partial", "failed", "cancelled"],
}

SCHEMAS = {
    "Error": obj(
        {
            "error": obj(
                {"code": STR, "message": STR, "fields": {"type": "object"}}, ["code", "message"]
            )
        }
    ),
    "Answer": obj(
        {
            "id": INT,
            "execution_id": INT,
            "question_index": INT,
            "question_id": nullable(STR),
            "prompt": STR,
            "run": INT,
            "status": STATUS_ANSWER,
            "output": nullable(STR),
            "output_sha256": nullable(STR),
            "error": nullable(STR),
            "attempts": INT,
            "provider": nullable(STR),
            "provider_model": nullable(STR),
            "started_at": TIME,
            "finished_at": TIME,
            "latency_ms": nullable(INT),
            "prompt_tokens": nullable(INT),
            "completion_tokens": nullable(INT),
            "classification": nullable(STR),
        }
    ),
    "Execution": obj(
        {
            "id": INT,
            "job_id": STR,
            "model_id": STR,
            "model_name": STR,
            "model_icon": STR,
            "region": STR,
            "region_name": STR,
            "provider": STR,
            "provider_model": STR,
            "status": STATUS_ANSWER,
            "started_at": TIME,
            "finished_at": TIME,
            "error": nullable(STR),
            "answers": {"type": "array", "items": ref("Answer")},
        },
        ["id", "job_id", "model_id", "model_name", "region", "status"],
    ),
    "Counts": obj(
        {k: INT for k in ("total", "queued", "running", "completed", "failed", "cancelled")}
    ),
    "Job": obj(
        {
            "id": STR,
            "status": STATUS_JOB,
            "spec_hash": STR,
            "signature_scheme": STR,
            "public_key": STR,
            "signer_kid": STR,
            "source": STR,
            "models": {"type": "array", "items": STR},
            "regions": {"type": "array", "items": STR},
            "questions": {
                "type": "array",
                "items": obj({"index": INT, "id": nullable(STR), "prompt": STR}),
            },
            "runs": INT,
            "constraints": obj({"min_regions": nullable(INT), "min_success_rate": nullable(NUM)}),
            "counts": ref("Counts"),
            "meets_constraints": nullable(BOOL),
            "submitted_at": TIME,
            "started_at": TIME,
            "finished_at": TIME,
            "deadline_at": TIME,
            "cancel_requested": BOOL,
            "executions": {"type": "array", "items": ref("Execution")},
            # Only on a big job, whose executions then come without `answers` (docs/api.md).
            "answers_page": obj({"total": INT, "url": STR}),
        },
        [
            "id",
            "status",
            "spec_hash",
            "signature_scheme",
            "models",
            "regions",
            "questions",
            "counts",
            "submitted_at",
        ],
    ),
    "Model": obj({"id": STR, "name": STR, "icon": STR, "provider_model": STR, "default": BOOL}),
    "Region": obj(
        {
            "id": STR,
            "name": STR,
            "aliases": {"type": "array", "items": STR},
            "provider": {"type": "string", "enum": ["openai", "ollama", "local"]},
            "max_concurrency": nullable(INT),
            "local": BOOL,
        }
    ),
    "Question": obj({"id": STR, "category": STR, "prompt": STR}),
    "Comparison": obj(
        {
            "job_id": STR,
            "baseline": nullable(STR),
            "measure": {"type": "string", "enum": ["lexical", "semantic"]},
            "differs_threshold": NUM,
            "regions": {"type": "array", "items": obj({"id": STR, "name": STR})},
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "model_id",
                        "model_name",
                        "divergence",
                        "refusal_regions",
                        "questions",
                    ],
                },
            },
        }
    ),
    "JobSpec": {
        "type": "object",
        "description": 'A signed JobSpec (SPEC section 4), or the wrapper {"jobspec": {...}}.',
        "properties": {
            "signature": {
                "type": "string",
                "pattern": "^[A-Za-z0-9+/]{86}==$",
                "description": "standard base64 of the 64-byte Ed25519 signature",
            },
            "public_key": {
                "type": "string",
                "pattern": "^[A-Za-z0-9+/]{43}=$",
                "description": "standard base64 of the 32-byte Ed25519 public key",
            },
            "jobspec": {"type": "object"},
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"},
            "jobspec_id": {"type": "string"},
            "version": STR,
            "benchmark": {"type": "object"},
            "constraints": {
                "type": "object",
                "properties": {
                    "regions": {"type": "array", "items": STR},
                    "min_regions": {"type": "integer", "minimum": 0},
                    "min_success_rate": {"type": "number", "minimum": 0, "maximum": 1},
                    "timeout": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "job deadline in nanoseconds",
                    },
                    "provider_timeout": {"type": "integer"},
                },
            },
            "metadata": {"type": ["object", "null"]},
            "models": {"type": "array", "items": {"type": ["string", "object"]}},
            "questions": {"type": ["array", "null"], "items": {"type": ["string", "object"]}},
            "runs": {"type": "integer", "minimum": 1, "maximum": 10},
            "created_at": STR,
        },
        "additionalProperties": True,
    },
}


def json_response(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict:
    return {
        str(s): json_response("refused; see docs/api.md for the codes", ref("Error"))
        for s in statuses
    }


def query(name: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def any_status(status: dict) -> dict:
    """Returns a status filter where the empty string, as a form sends it, means any status."""
    return {**status, "enum": [*status["enum"], ""]}


LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size (50)")
CURSOR = query("cursor", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "`next` of a page")
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
                    **errors(401, 403, 404, 409),
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
                    **errors(401, 403, 404, 409),
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
                    **errors(404),
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
                "responses": {"200": json_response("models", listing(ref("Model")))},
            }
        },
        "/api/v1/regions": {
            "get": {
                "operationId": "list_regions",
                "summary": "Configured regions",
                "responses": {"200": json_response("regions", listing(ref("Region")))},
            }
        },
        "/api/v1/questions": {
            "get": {
                "operationId": "list_questions",
                "summary": "The question bank",
                "responses": {"200": json_response("questions", listing(ref("Question")))},
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
        "paths": paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "BEACON_ADMIN_TOKEN"}
            },
        },
    }
