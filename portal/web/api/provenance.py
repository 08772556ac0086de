"""The provenance API under /api/v1 (SPEC section 9): receipts, the log, proofs, evidence."""

from __future__ import annotations

import json
import re

from flask import Response, jsonify, request, stream_with_context
from sqlalchemy import select

from portal import settings
from portal.db import MAX_INT32, db
from portal.engine.jobs import find_execution, find_job
from portal.errors import ApiError
from portal.provenance import cosigning, evidence, receipts, tlog
from portal.provenance.log_models import Receipt
from portal.web import paging, rendering
from portal.web.api import streaming
from portal.web.api.blueprint import bp

MAX_ENTRIES = 1000


@bp.get("/executions/<int:execution_id>/receipt")
def get_receipt(execution_id: int):
    """Returns the execution's newest signed receipt and its place in the log."""
    find_execution(execution_id)
    receipt = receipts.latest_receipt(execution_id)
    if receipt is None:
        raise ApiError(
            404,
            "receipt_not_found",
            f"execution {execution_id} has no receipt yet: it is issued when the execution ends",
        )
    doc = receipts.served(receipt)
    doc["public_key"] = settings.current().portal_public_key
    return jsonify(doc)


@bp.get("/log/checkpoint")
def get_checkpoint():
    """Returns the log's checkpoint (or, with ?cosigned=1, its newest cosigned one) and its
    signed note with the witnesses' cosignatures."""
    raw = request.args.get("cosigned", "0")
    if raw not in ("0", "1"):
        raise ApiError(400, "invalid_parameter", "cosigned must be 0 or 1", {"cosigned": raw})
    s = settings.current()
    return jsonify(cosigning.served_checkpoint(s.log_origin, s.signing_seed, raw == "1"))


@bp.get("/log/proof/inclusion")
def get_inclusion_proof():
    """Returns the RFC 9162 inclusion path of one entry in a tree of the given size."""
    size, _ = tlog.head()
    index = _log_number("index")
    try:
        return jsonify(tlog.inclusion(index, _log_number("size", size)))
    except tlog.ProofError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), dict(request.args)) from None


@bp.get("/log/proof/consistency")
def get_consistency_proof():
    """Returns the RFC 9162 consistency path between two tree sizes."""
    size, _ = tlog.head()
    old = _log_number("old")
    try:
        return jsonify(tlog.consistency(old, _log_number("new", size)))
    except tlog.ProofError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), dict(request.args)) from None


def _log_number(name: str, default: int | None = None) -> int:
    """A log index or tree size from the query string (the columns are 32-bit integers)."""
    return paging.integer(
        request.args, name, default=default, maximum=MAX_INT32, required=default is None
    )


def _index(raw: str) -> int:
    """A log index as `next` gave it (the column is a 32-bit integer)."""
    return paging.integer({"cursor": raw}, "cursor", maximum=MAX_INT32)


@bp.get("/log/entries")
def list_entries():
    """Lists log entries in index order, for auditors who rebuild the tree."""
    start = paging.integer(request.args, "start", default=0, maximum=MAX_INT32)
    limit, cursor = paging.page_args(request.args, default=100, maximum=MAX_ENTRIES, cursor=_index)
    if cursor is not None:
        start = cursor
    rows = db.session.scalars(
        select(Receipt)
        .where(Receipt.log_index >= start)
        .order_by(Receipt.log_index)
        .limit(limit + 1)
    ).all()
    page, more = rows[:limit], len(rows) > limit
    entries = [(r.log_index, r.body, r.signature) for r in page]
    following = str(rows[limit].log_index) if more else None

    def build() -> dict:
        # Decoded and encoded off the event loop: a page is up to 1,000 receipts.
        items = [
            {"index": index, "receipt": json.loads(body), "signature": signature}
            for index, body, signature in entries
        ]
        return {"items": items, "next": following}

    return rendering.json_response(build)


@bp.get("/jobs/<job_id>/evidence")
def get_evidence(job_id: str):
    """Returns one file that verifies the job offline: spec, receipts, proofs, checkpoint."""
    job = find_job(job_id, load_answers=False)
    s = settings.current()
    # Proved against the newest cosigned checkpoint when it holds every receipt of the job,
    # else against the current one (whatever cosignatures it has).
    checkpoint = cosigning.served_checkpoint(s.log_origin, s.signing_seed, cosigned=True)
    newest = evidence.newest_receipt(job.id)
    if newest is not None and newest >= checkpoint["size"]:
        checkpoint = cosigning.served_checkpoint(s.log_origin, s.signing_seed)
    doc = evidence.evidence_document(job, checkpoint, s.portal_public_key)
    # Streamed (issue 26): megabytes for a big job, never whole in memory.
    response = Response(
        stream_with_context(streaming.stream_json(doc)), mimetype="application/json"
    )
    name = re.sub(r"[^A-Za-z0-9._-]", "_", job.id)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-evidence.json"'
    return response
