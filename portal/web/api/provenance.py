"""The provenance API under /api/v1 (SPEC section 9): receipts, the log, proofs, evidence."""

from __future__ import annotations

import json
import re

from flask import jsonify, request
from sqlalchemy import func, select

from portal import settings
from portal.db import db
from portal.errors import ApiError
from portal.models import Execution, Job, with_answers
from portal.provenance import cosigning, receipts, tlog
from portal.provenance.log_models import Receipt
from portal.web.api.blueprint import bp

DIGITS = re.compile(r"[0-9]{1,18}")
MAX_ENTRIES = 1000
MAX_ROW_ID = 2**63 - 1


def _number(name: str, default: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None and default is not None:
        return default
    if raw is None or not DIGITS.fullmatch(raw):
        raise ApiError(
            400, "invalid_parameter", f"{name} must be a non-negative integer", {name: raw}
        )
    return int(raw)


@bp.get("/executions/<int:execution_id>/receipt")
def get_receipt(execution_id: int):
    """Returns the execution's newest signed receipt and its place in the log."""
    execution = db.session.get(Execution, execution_id) if execution_id <= MAX_ROW_ID else None
    if execution is None:
        raise ApiError(404, "execution_not_found", f"no execution with id {execution_id}")
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
    index = _number("index")
    try:
        return jsonify(tlog.inclusion(index, _number("size", size)))
    except tlog.ProofError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), dict(request.args)) from None


@bp.get("/log/proof/consistency")
def get_consistency_proof():
    """Returns the RFC 9162 consistency path between two tree sizes."""
    size, _ = tlog.head()
    old = _number("old")
    try:
        return jsonify(tlog.consistency(old, _number("new", size)))
    except tlog.ProofError as exc:
        raise ApiError(400, "invalid_parameter", str(exc), dict(request.args)) from None


@bp.get("/log/entries")
def list_entries():
    """Lists log entries in index order, for auditors who rebuild the tree."""
    start = _number("start", 0)
    limit = _number("limit", 100)
    if not 1 <= limit <= MAX_ENTRIES:
        raise ApiError(400, "invalid_parameter", f"limit must be 1 to {MAX_ENTRIES}")
    if request.args.get("cursor") is not None:
        start = _number("cursor")
    rows = db.session.scalars(
        select(Receipt)
        .where(Receipt.log_index >= start)
        .order_by(Receipt.log_index)
        .limit(limit + 1)
    ).all()
    page, more = rows[:limit], len(rows) > limit
    items = [
        {"index": r.log_index, "receipt": json.loads(r.body), "signature": r.signature}
        for r in page
    ]
    return jsonify(items=items, next=str(rows[limit].log_index) if more else None)


@bp.get("/jobs/<job_id>/evidence")
def get_evidence(job_id: str):
    """Returns one file that verifies the job offline: spec, receipts, proofs, checkpoint."""
    job = db.session.scalar(select(Job).where(Job.id == job_id).options(with_answers()))
    if job is None:
        raise ApiError(404, "job_not_found", f"no job with id {job_id!r}")
    s = settings.current()
    # Proved against the newest cosigned checkpoint when it holds every receipt of the job,
    # else against the current one (whatever cosignatures it has).
    checkpoint = cosigning.served_checkpoint(s.log_origin, s.signing_seed, cosigned=True)
    newest = db.session.scalar(
        select(func.max(Receipt.log_index)).where(
            Receipt.execution_id.in_([e.id for e in job.executions])
        )
    )
    if newest is not None and newest >= checkpoint["size"]:
        checkpoint = cosigning.served_checkpoint(s.log_origin, s.signing_seed)
    rows = db.session.scalars(
        select(Receipt)
        .where(Receipt.execution_id.in_([e.id for e in job.executions]))
        .where(Receipt.log_index < checkpoint["size"])
        .order_by(Receipt.log_index)
    ).all()
    doc = {
        "format": "beacon-evidence-v1",
        "job": {
            "id": job.id,
            "spec_hash": job.spec_hash,
            "signature_scheme": job.signature_scheme,
            "spec": job.spec_raw,
        },
        "executions": [e.to_dict(with_answers=True) for e in job.executions],
        "receipts": [
            {
                **receipts.served(r),
                "inclusion": tlog.inclusion(r.log_index, checkpoint["size"]),
            }
            for r in rows
        ],
        "checkpoint": checkpoint,
        "public_key": s.portal_public_key,
    }
    response = jsonify(doc)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", job.id)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-evidence.json"'
    return response
