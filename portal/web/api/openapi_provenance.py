"""The provenance part of the OpenAPI document (SPEC section 9), merged by web/api/openapi.py."""

from __future__ import annotations

STR, INT = {"type": "string"}, {"type": "integer"}
B64 = {"type": "string", "contentEncoding": "base64"}
NUMBER = {"type": "string", "pattern": "^[0-9]{1,18}$"}
ERROR = {"$ref": "#/components/schemas/Error"}


def obj(properties: dict, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


def ok(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def refused(*statuses: int) -> dict:
    return {str(s): ok("refused; see docs/api.md for the codes", ERROR) for s in statuses}


def param(name: str, where: str, schema: dict, description: str, required: bool) -> dict:
    return {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": description,
    }


def get(operation_id: str, summary: str, parameters: list, responses: dict) -> dict:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
    }


ANSWER = obj(
    {
        "answer_id": INT,
        "question_index": INT,
        "question_id": {"type": ["string", "null"]},
        "run": INT,
        "prompt_sha256": STR,
        "status": STR,
        "output_sha256": {"type": ["string", "null"]},
        "attempts": INT,
        "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]},
        "served_by": {"type": "object"},
    }
)
SCHEMAS = {
    "Receipt": obj(
        {
            "format": {"type": "string", "const": "beacon-receipt-v1"},
            "log_origin": STR,
            "job_id": STR,
            "spec_hash": STR,
            "signer_public_key": STR,
            "execution_id": INT,
            "model_id": STR,
            "provider_model": STR,
            "region": STR,
            "provider": STR,
            "endpoint": {"type": ["string", "null"]},
            "status": STR,
            "started_at": {"type": ["string", "null"]},
            "finished_at": {"type": ["string", "null"]},
            "issued_at": STR,
            "answers": {"type": "array", "items": ANSWER},
        }
    ),
    "Checkpoint": obj(
        {
            "origin": STR,
            "size": INT,
            "root_hash": B64,
            "public_key": B64,
            "note": STR,
            "witnessed": {"type": "object", "additionalProperties": INT},
        }
    ),
    "InclusionProof": obj(
        {"index": INT, "size": INT, "leaf_hash": B64, "hashes": {"type": "array", "items": B64}}
    ),
}
RECEIPT = {"$ref": "#/components/schemas/Receipt"}
CHECKPOINT = {"$ref": "#/components/schemas/Checkpoint"}
INCLUSION = {"$ref": "#/components/schemas/InclusionProof"}
SIGNED = {"receipt": RECEIPT, "signature": B64, "log_index": INT}

PATHS = {
    "/api/v1/executions/{execution_id}/receipt": get(
        "get_receipt",
        "The execution's signed receipt and its log index (404 until it has ended)",
        [param("execution_id", "path", {"type": "integer", "minimum": 0}, "execution id", True)],
        {
            "200": ok("the receipt", obj({**SIGNED, "public_key": B64})),
            **refused(404),
        },
    ),
    "/api/v1/log/checkpoint": get(
        "get_checkpoint",
        "The log's checkpoint: a C2SP tlog-checkpoint in a signed note, with its cosignatures",
        [
            param(
                "cosigned",
                "query",
                {"type": "string", "enum": ["0", "1"]},
                "1: the newest checkpoint a witness cosigned (the current one while none is)",
                False,
            )
        ],
        {"200": ok("the checkpoint", CHECKPOINT), **refused(400)},
    ),
    "/api/v1/log/proof/inclusion": get(
        "get_inclusion_proof",
        "RFC 9162 inclusion path of entry `index` in the tree of `size` (default: now)",
        [
            param("index", "query", NUMBER, "entry index", True),
            param("size", "query", NUMBER, "tree size (default: the current size)", False),
        ],
        {"200": ok("the proof", INCLUSION), **refused(400)},
    ),
    "/api/v1/log/proof/consistency": get(
        "get_consistency_proof",
        "RFC 9162 consistency path from tree size `old` to `new` (default: now)",
        [
            param("old", "query", NUMBER, "older tree size", True),
            param("new", "query", NUMBER, "newer tree size (default: the current size)", False),
        ],
        {
            "200": ok(
                "the proof",
                obj({"old": INT, "new": INT, "hashes": {"type": "array", "items": B64}}),
            ),
            **refused(400),
        },
    ),
    "/api/v1/log/entries": get(
        "list_entries",
        "Log entries in index order, for auditors who rebuild the tree",
        [
            param("start", "query", NUMBER, "first index (0)", False),
            param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "", False),
            param("cursor", "query", NUMBER, "`next` of a page", False),
        ],
        {
            "200": ok(
                "a page of entries",
                obj(
                    {
                        "items": {
                            "type": "array",
                            "items": obj({"index": INT, "receipt": RECEIPT, "signature": B64}),
                        },
                        "next": {"type": ["string", "null"]},
                    }
                ),
            ),
            **refused(400),
        },
    ),
    "/api/v1/jobs/{job_id}/evidence": get(
        "get_evidence",
        "One file that verifies the job offline: spec, receipts, inclusion proofs, checkpoint",
        [param("job_id", "path", STR, "job id", True)],
        {
            "200": ok(
                "the evidence file (docs/provenance.md)",
                obj(
                    {
                        "format": {"type": "string", "const": "beacon-evidence-v1"},
                        "job": obj(
                            {"id": STR, "spec_hash": STR, "signature_scheme": STR, "spec": STR}
                        ),
                        "executions": {"type": "array", "items": {"type": "object"}},
                        "receipts": {
                            "type": "array",
                            "items": obj({**SIGNED, "inclusion": INCLUSION}),
                        },
                        "checkpoint": CHECKPOINT,
                        "public_key": B64,
                    }
                ),
            ),
            **refused(404),
        },
    ),
}
