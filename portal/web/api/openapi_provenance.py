"""The provenance part of the OpenAPI document (SPEC section 9), merged by web/api/openapi.py."""

from __future__ import annotations

from portal.web.api.openapi_parts import (
    B64,
    INT,
    STR,
    errors,
    get,
    json_response,
    obj,
    path_param,
    query,
)

NUMBER = {"type": "string", "pattern": "^[0-9]{1,18}$"}


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
        [path_param("execution_id", {"type": "integer", "minimum": 0}, "execution id")],
        {
            "200": json_response("the receipt", obj({**SIGNED, "public_key": B64})),
            **errors(404),
        },
    ),
    "/api/v1/log/checkpoint": get(
        "get_checkpoint",
        "The log's checkpoint: a C2SP tlog-checkpoint in a signed note, with its cosignatures",
        [
            query(
                "cosigned",
                {"type": "string", "enum": ["0", "1"]},
                "1: the newest checkpoint a witness cosigned (the current one while none is)",
                False,
            )
        ],
        {"200": json_response("the checkpoint", CHECKPOINT), **errors(400)},
    ),
    "/api/v1/log/proof/inclusion": get(
        "get_inclusion_proof",
        "RFC 9162 inclusion path of entry `index` in the tree of `size` (default: now)",
        [
            query("index", NUMBER, "entry index", required=True),
            query("size", NUMBER, "tree size (default: the current size)"),
        ],
        {"200": json_response("the proof", INCLUSION), **errors(400)},
    ),
    "/api/v1/log/proof/consistency": get(
        "get_consistency_proof",
        "RFC 9162 consistency path from tree size `old` to `new` (default: now)",
        [
            query("old", NUMBER, "older tree size", required=True),
            query("new", NUMBER, "newer tree size (default: the current size)"),
        ],
        {
            "200": json_response(
                "the proof",
                obj({"old": INT, "new": INT, "hashes": {"type": "array", "items": B64}}),
            ),
            **errors(400),
        },
    ),
    "/api/v1/log/entries": get(
        "list_entries",
        "Log entries in index order, for auditors who rebuild the tree",
        [
            query("start", NUMBER, "first index (0)"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, ""),
            query("cursor", NUMBER, "`next` of a page"),
        ],
        {
            "200": json_response(
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
            **errors(400),
        },
    ),
    "/api/v1/jobs/{job_id}/evidence": get(
        "get_evidence",
        "One file that verifies the job offline: spec, receipts, inclusion proofs, checkpoint",
        [path_param("job_id", STR, "job id")],
        {
            "200": json_response(
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
            **errors(404),
        },
    ),
}
