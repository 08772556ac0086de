"""The component schemas of the OpenAPI document (`portal.openapi`): what the API answers."""

from __future__ import annotations

from .status import JOB_STATUSES, RUN_STATUSES

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


STATUS_ANSWER = {"type": "string", "enum": list(RUN_STATUSES)}
STATUS_JOB = {"type": "string", "enum": list(JOB_STATUSES)}

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
    "Counts": obj({k: INT for k in ("total", *RUN_STATUSES)}),
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
