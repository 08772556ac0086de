"""The component schemas of the OpenAPI document (`web.api.openapi`): what the API answers."""

from __future__ import annotations

from portal.config_tables import PROVIDER_KINDS
from portal.intake.jobspec import CONSTRAINT_TYPES, FIELD_TYPES, JOB_ID_PATTERN, MAX_RUNS
from portal.intake.signing import KEY_BYTES, SIGNATURE_BYTES
from portal.questions import LANGUAGE_TAG
from portal.status import CLASSIFIED, JOB_STATUSES, RUN_STATUSES
from portal.web.api.openapi_parts import BOOL, INT, NUM, STR, TIME, nullable, obj, ref

# A BCP 47 tag as the portal reads one (any case): en, zh-TW, pt-BR.
LANGUAGE = {"type": "string", "pattern": f"^{LANGUAGE_TAG.pattern}$"}


_JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def json_type(types: tuple[type, ...]) -> str | list[str]:
    """The JSON Schema type of a validator's accepted Python types (int and float: number)."""
    names = [_JSON_TYPES[t] for t in types]
    if "number" in names and "integer" in names:
        names.remove("integer")
    return names[0] if len(names) == 1 else names


def base64_pattern(size: int) -> str:
    """The pattern of standard padded base64 for exactly `size` bytes."""
    pad = (3 - size % 3) % 3
    return f"^[A-Za-z0-9+/]{{{(size + pad) // 3 * 4 - pad}}}{'=' * pad}$"


def jobspec_properties() -> dict:
    """The JobSpec's fields from the validators' own tables and limits (portal.intake.jobspec)."""
    props = {name: {"type": json_type(types)} for name, types in FIELD_TYPES.items()}
    props["jobspec"] = {"type": "object"}
    props["id"]["pattern"] = JOB_ID_PATTERN.pattern
    props["runs"].update(minimum=1, maximum=MAX_RUNS)
    for name, what, size in (
        ("signature", "signature", SIGNATURE_BYTES),
        ("public_key", "public key", KEY_BYTES),
    ):
        props[name]["pattern"] = base64_pattern(size)
        props[name]["description"] = f"standard base64 of the {size}-byte Ed25519 {what}"
    for name in ("models", "questions"):
        props[name]["items"] = {"type": ["string", "object"]}
    props["languages"]["items"] = LANGUAGE
    props["languages"]["description"] = (
        "BCP 47 tags: ask each bank question in each listed language it has (also accepted "
        "as metadata.languages)"
    )
    constraints = {name: {"type": json_type(t)} for name, t in CONSTRAINT_TYPES.items()}
    constraints["regions"]["items"] = STR
    constraints["min_regions"]["minimum"] = 0
    constraints["min_success_rate"].update(minimum=0, maximum=1)
    constraints["timeout"].update(minimum=0, description="job deadline in nanoseconds")
    constraints["max_cost_usd"].update(minimum=0, description="the job's own budget in USD")
    props["constraints"]["properties"] = constraints
    return props


STATUS_ANSWER = {"type": "string", "enum": list(RUN_STATUSES)}
# One language a job's question is asked in (SPEC section 11).
ASKED = obj({"language": STR, "prompt": STR, "version": STR})
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
            "language": STR,
            "question_version": nullable(STR),
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
            "cost_usd": nullable(NUM),
            "classification": nullable(STR),
            "served_by": {"type": "object"},
            "judgement": {"oneOf": [ref("Judgement"), {"type": "null"}]},
        }
    ),
    "Judgement": obj(
        {
            "label": {
                "type": ["string", "null"],
                "enum": ["complete", "evasive", "denial", "error", None],
            },
            "model_id": STR,
            "region": STR,
            "prompt_version": STR,
            "status": STATUS_ANSWER,
            "agrees": nullable(BOOL),
            "reply": nullable(STR),
            "error": nullable(STR),
            "finished_at": TIME,
        }
    ),
    "Summary": obj(
        {"text": STR, "model_id": STR, "region": STR, "prompt_version": STR, "created_at": TIME}
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
                "items": obj(
                    {
                        "index": INT,
                        "id": nullable(STR),
                        "prompt": STR,
                        "language": STR,
                        "version": STR,
                        "languages": {"type": "array", "items": ASKED},
                    },
                    ["index", "id", "prompt"],
                ),
            },
            "languages": {"type": "array", "items": STR},
            "runs": INT,
            "constraints": obj(
                {
                    "min_regions": nullable(INT),
                    "min_success_rate": nullable(NUM),
                    "max_cost_usd": nullable(NUM),
                }
            ),
            "cost_usd": nullable(NUM),
            "estimated_cost_usd": nullable(NUM),
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
    "Model": obj(
        {
            "id": STR,
            "name": STR,
            "icon": STR,
            "provider_model": STR,
            "default": BOOL,
            "price_in_per_mtok": nullable(NUM),
            "price_out_per_mtok": nullable(NUM),
        }
    ),
    "Region": obj(
        {
            "id": STR,
            "name": STR,
            "aliases": {"type": "array", "items": STR},
            "provider": {"type": "string", "enum": list(PROVIDER_KINDS)},
            "max_concurrency": nullable(INT),
            "local": BOOL,
            "health": obj(
                dict(status={"type": "string", "enum": ["ok", "degraded", "failing", "idle"]})
                | dict.fromkeys(("window_s", "calls", "failed"), INT)
                | {"error_rate": nullable(NUM), "p50_latency_ms": nullable(INT)}
                | {"last_success_at": TIME}
            ),
        }
    ),
    "Question": obj(
        {
            "id": STR,
            "category": STR,
            "prompt": STR,
            "language": STR,
            "version": STR,
            "variants": {
                "type": "object",
                "additionalProperties": obj({"prompt": STR, "version": STR}),
            },
            "framing_terms": {"type": "array", "items": STR},
        },
        ["id", "category", "prompt", "language", "version", "variants"],
    ),
    "HistoryItem": obj(
        {
            "job_id": STR,
            "job_submitted_at": TIME,
            "answer_id": INT,
            "execution_id": INT,
            "model_id": STR,
            "model_name": STR,
            "region": STR,
            "region_name": STR,
            "question_index": INT,
            "language": STR,
            "prompt": STR,
            "question_version": STR,
            "prompt_changed": BOOL,
            "run": INT,
            "status": {"type": "string", "enum": [str(s) for s in CLASSIFIED]},
            "finished_at": TIME,
            "output_sha256": nullable(STR),
            "output": nullable(STR),
            "error": nullable(STR),
            "classification": STR,
            "classification_rule": STR,
            "previous_answer_id": nullable(INT),
            "previous_job_id": nullable(STR),
            "previous_classification": nullable(STR),
            "similarity_to_previous": nullable(NUM),
            "class_changed": BOOL,
            "text_changed": BOOL,
        }
    ),
    "Comparison": obj(
        {
            "job_id": STR,
            "baseline": nullable(STR),
            "measure": {"type": "string", "enum": ["lexical", "semantic"]},
            "differs_threshold": NUM,
            "rules_version": STR,
            "embedding_model": nullable(STR),
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
        "properties": jobspec_properties(),
        "additionalProperties": True,
    },
}
