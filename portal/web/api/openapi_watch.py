"""The watching part of the OpenAPI document (SPEC section 12), merged by `web.api.openapi`."""

from __future__ import annotations

from portal.watch.changes import KINDS
from portal.web.api.openapi_parts import (
    INT,
    STR,
    errors,
    json_response,
    listing,
    nullable,
    obj,
    query,
    ref,
)
from portal.web.paging import DEFAULT_LIMIT, DIGITS, MAX_LIMIT

STRINGS = {"type": "array", "items": STR}


SERVED = nullable({"type": "object", "properties": {"model": STR, "system_fingerprint": STR}})
SCHEMAS = {
    "Schedule": obj(
        {
            "name": STR,
            "every": STR,
            "every_s": INT,
            "questions": STRINGS,
            "models": STRINGS,
            "regions": STRINGS,
            "languages": STRINGS,
            "runs": INT,
            "next_run_at": {"type": "string", "format": "date-time"},
            "last_job_id": nullable(STR),
        }
    ),
    "Change": obj(
        {
            "id": INT,
            "detected_at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string", "enum": list(KINDS)},
            "question_id": STR,
            "question_index": INT,
            "language": STR,
            "question_version": nullable(STR),
            "model_id": STR,
            "region": STR,
            "job_id": STR,
            "answer_id": INT,
            "previous_job_id": STR,
            "previous_answer_id": INT,
            "from_class": nullable(STR),
            "to_class": nullable(STR),
            "from_label": nullable(STR),
            "to_label": nullable(STR),
            "similarity": {"type": ["number", "null"]},
            "measure": STR,
            "from_served": SERVED,
            "to_served": SERVED,
        }
    ),
}
PATHS = {
    "/api/v1/schedules": {
        "get": {
            "operationId": "list_schedules",
            "summary": "The configured schedules, their next run and last job",
            "responses": {
                "200": json_response("the schedules", listing(ref("Schedule"))),
                **errors(400),
            },
        }
    },
    "/api/v1/schedules/{name}/run": {
        "post": {
            "operationId": "run_schedule",
            "summary": "Submit a schedule's job now, signed with the portal's key",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": STR}],
            "security": [{"admin": []}],
            "responses": {
                "202": json_response("submitted and queued", obj({"job": ref("Job")})),
                **errors(400, 401, 403, 404, 409, 429),
            },
        }
    },
    "/api/v1/changes": {
        "get": {
            "operationId": "list_changes",
            "summary": "Answers that changed between runs, newest first",
            "parameters": [
                query("question_id", STR, "only this question"),
                query("model_id", STR, "only this model"),
                query("region", STR, "only this region (aliases accepted)"),
                query("language", STR, "only this language (BCP 47)"),
                query("kind", {"type": "string", "enum": [*KINDS, ""]}, "only this kind"),
                query("job_id", STR, "only the changes found in this job's answers"),
                query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                    f"page size ({DEFAULT_LIMIT})",
                ),
                query(
                    "cursor",
                    {"type": "string", "pattern": f"^{DIGITS.pattern}$"},
                    "`next` of a page",
                ),
            ],
            "responses": {
                "200": json_response("a page of changes", listing(ref("Change"))),
                **errors(400),
            },
        }
    },
}
