"""Signed receipts of ended executions, appended to the transparency log (SPEC section 9).

`record` builds the receipt of an ended execution, signs its JCS bytes (RFC 8785) with the
portal key and appends it to the log under the log's lock, in the caller's transaction: the
engine calls it in the very transaction that ends an execution, so an ended execution always
has its receipt. `issue` does the same in a transaction of its own, for ends the engine did
not make (cancel, the deadline sweep) and for the backfill. Both are idempotent: one receipt
per end (a retried execution ends again and gets the next `seq`), and the unique
(execution_id, seq) pair settles any race the lock did not.

An append the log refuses (a unique constraint after a rollback of the head, a missing stored
node) raises `AppendFailed` from `record`; the engine then ends the execution without its
receipt, which waits (portal/provenance/waiting.py) for the sweep, `issue_recent`, to append
it once the log takes appends again (SPEC section 9, "Failure to append").
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import nacl.signing
import rfc8785
from sqlalchemy import and_, exists, select
from sqlalchemy.exc import SQLAlchemyError

from portal import settings
from portal.config import BeaconConfig
from portal.db import db
from portal.models import FINISHED, Answer, Execution, Job
from portal.provenance import merkle, tlog, waiting
from portal.provenance.log_models import Receipt
from portal.status import RunStatus
from portal.times import iso, utcnow

FORMAT = "beacon-receipt-v1"
# The dispatchers' sweep issues receipts an interrupted worker left unissued, this far back;
# `flask beacon backfill-receipts` covers anything older.
RECENT_S = 3600
SWEEP_LIMIT = 100
log = logging.getLogger(__name__)


class AppendFailed(Exception):
    """The log did not take a receipt (the caller's transaction must be rolled back)."""


def sha256_text(value: str | None) -> str | None:
    """Returns the hex SHA-256 of text in UTF-8, or None."""
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def endpoint(config: BeaconConfig, region_id: str) -> str | None:
    """Returns `host:port` of the region's base URL, `local`, or None when not configured."""
    region = config.regions.get(region_id)
    if region is None:
        return None
    if region.provider == "local" or not region.base_url:
        return "local"
    parts = urlsplit(region.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def answer_entry(answer: Answer) -> dict:
    """Returns one answer of a receipt; `output_sha256` hashes the output as the API serves it."""
    completed = answer.status == RunStatus.COMPLETED and answer.output is not None
    return {
        "answer_id": answer.id,
        "question_index": answer.question_index,
        "question_id": answer.question_id,
        "run": answer.run,
        "prompt_sha256": sha256_text(answer.prompt),
        "status": answer.status,
        "output_sha256": sha256_text(answer.output) if completed else None,
        "attempts": answer.attempts,
        "started_at": iso(answer.started_at),
        "finished_at": iso(answer.finished_at),
        "served_by": {k: v for k, v in (answer.served_by or {}).items() if v not in (None, "", {})},
    }


def build(
    execution: Execution, job: Job, answers: list[Answer], config: BeaconConfig, origin: str
) -> dict:
    """Returns the receipt of an ended execution, with the fields of SPEC section 9."""
    return {
        "format": FORMAT,
        "log_origin": origin,
        "job_id": job.id,
        "spec_hash": job.spec_hash,
        "signer_public_key": job.public_key,
        "execution_id": execution.id,
        "model_id": execution.model_id,
        "provider_model": execution.provider_model,
        "region": execution.region,
        "provider": execution.provider,
        "endpoint": endpoint(config, execution.region),
        "status": execution.status,
        "started_at": iso(execution.started_at),
        "finished_at": iso(execution.finished_at),
        "issued_at": iso(utcnow()),
        "answers": [answer_entry(a) for a in answers],
    }


def sign(body: bytes, seed: bytes) -> str:
    """Returns the standard base64 Ed25519 signature of `body` by the portal key."""
    return base64.b64encode(nacl.signing.SigningKey(seed).sign(body).signature).decode("ascii")


def record(
    execution_id: int, config: BeaconConfig, origin: str, seed: bytes, *, late: bool = False
) -> Receipt | None:
    """Adds the receipt of an ended execution to the caller's transaction, under the log's lock.

    Returns the new receipt, the existing one when this end already has one, or None when the
    execution has not ended. The caller commits (or rolls back) the receipt with its own work.
    """
    db.session.flush()
    try:
        return _append(execution_id, config, origin, seed, late)
    except (SQLAlchemyError, LookupError) as exc:
        raise AppendFailed(f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}") from exc


def _append(execution_id: int, config, origin: str, seed: bytes, late: bool) -> Receipt | None:
    # On SQLite the lock is the transaction's first statement (its write lock, so the head read
    # later is the latest). PostgreSQL's lock can come at any point: it is taken only once the
    # receipt is built and signed, so the log's one lock is held for the append alone and the
    # executions ending together do not wait out each other's answers and signatures.
    lock_first = db.engine.dialect.name != "postgresql"
    if lock_first:
        tlog.lock()
    execution = db.session.get(Execution, execution_id)
    if execution is None or execution.status not in FINISHED or not execution.finished_at:
        return None
    latest = latest_receipt(execution_id)
    if _covers(latest, execution):
        waiting.release(execution_id)
        return latest
    answers = db.session.scalars(
        select(Answer)
        .where(Answer.execution_id == execution_id)
        # By question, then as stored (language by language, runs in order): for one language,
        # the (question, run) order receipts always had.
        .order_by(Answer.question_index, Answer.id)
    ).all()
    job = db.session.get(Job, _job_pk(execution.job_id))
    doc = build(execution, job, list(answers), config, origin)
    body = rfc8785.dumps(doc)
    signature = sign(body, seed)
    if not lock_first:
        tlog.lock()
        # Another process (the sweep) may have issued this end's receipt while it was built.
        latest = latest_receipt(execution_id)
        if _covers(latest, execution):
            waiting.release(execution_id)
            return latest
    receipt = Receipt(
        execution_id=execution_id,
        seq=(latest.seq + 1) if latest else 1,
        log_index=tlog.append(merkle.leaf_hash(body)),
        body=body.decode("utf-8"),
        signature=signature,
        ended_at=execution.finished_at,
        issued_at=datetime.fromisoformat(doc["issued_at"]),
        late=late,
    )
    db.session.add(receipt)
    waiting.release(execution_id)
    # Flushed here, so a unique log_index the log already holds fails inside `record`.
    db.session.flush()
    return receipt


def _covers(receipt: Receipt | None, execution: Execution) -> bool:
    """Whether `receipt` is the receipt of the execution's current end."""
    return receipt is not None and receipt.ended_at == execution.finished_at


def issue(
    execution_id: int, config: BeaconConfig, origin: str, seed: bytes, *, late: bool = False
) -> Receipt | None:
    """Issues, in a transaction of its own, the receipt of an ended execution once per end.

    When the log refuses it, the receipt waits for the sweep and this returns None."""
    try:
        return _issue(execution_id, config, origin, seed, late)
    except AppendFailed:
        return None


def _issue(execution_id: int, config, origin: str, seed: bytes, late: bool) -> Receipt | None:
    # Committed first: on SQLite the log's lock must be the new transaction's first statement.
    db.session.commit()
    try:
        receipt = record(execution_id, config, origin, seed, late=late)
        db.session.commit()
    except AppendFailed as exc:
        db.session.rollback()
        latest = latest_receipt(execution_id)
        execution = db.session.get(Execution, execution_id)
        if latest is not None and execution and latest.ended_at == execution.finished_at:
            return latest  # another worker issued it between our reads; theirs stands
        waiting.failed(execution_id, str(exc))
        waiting.hold(execution_id, str(exc))
        db.session.commit()
        raise
    return receipt


def record_end(execution_id: int) -> Receipt | None:
    """Adds an execution's receipt to the transaction that ends it, with the app's settings."""
    s = settings.current()
    return record(execution_id, s.config, s.log_origin, s.signing_seed)


def issue_recent() -> int:
    """Issues the receipts of executions that ended in the last hour without one."""
    s = settings.current()
    return issue_missing(
        s.config, s.log_origin, s.signing_seed, window_s=RECENT_S, limit=SWEEP_LIMIT
    )


def issue_for_job(job_id: str) -> int:
    """Issues the missing receipts of one job's ended executions (after a cancel)."""
    s = settings.current()
    ids = missing(job_id=job_id)
    db.session.commit()
    return sum(1 for i in ids if issue(i, s.config, s.log_origin, s.signing_seed) is not None)


def _job_pk(job_id: str) -> int:
    return db.session.scalar(select(Job.pk).where(Job.id == job_id))


def latest_receipt(execution_id: int) -> Receipt | None:
    """Returns the execution's newest receipt, or None."""
    return db.session.scalar(
        select(Receipt)
        .where(Receipt.execution_id == execution_id)
        .order_by(Receipt.seq.desc())
        .limit(1)
    )


def missing(
    since: datetime | None = None, limit: int | None = None, job_id: str | None = None
) -> list[int]:
    """Returns ended executions whose current end has no receipt yet, oldest end first."""
    covered = exists().where(
        and_(Receipt.execution_id == Execution.id, Receipt.ended_at == Execution.finished_at)
    )
    query = (
        select(Execution.id)
        .where(Execution.status.in_(FINISHED), Execution.finished_at.is_not(None), ~covered)
        .order_by(Execution.finished_at, Execution.id)
    )
    if since is not None:
        query = query.where(Execution.finished_at >= since)
    if job_id is not None:
        query = query.where(Execution.job_id == job_id)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query))


def issue_missing(config, origin, seed, *, late=False, window_s=None, limit=None) -> int:
    """Issues the waiting receipts, then every missing one (within the last `window_s`
    seconds); returns how many. Stops at the first append the log refuses: the next sweep
    tries again."""
    since = utcnow() - timedelta(seconds=window_s) if window_s is not None else None
    ids = list(dict.fromkeys(waiting.waiting_ids(limit) + missing(since, limit)))
    db.session.commit()
    issued = 0
    for execution_id in ids:
        before = latest_receipt(execution_id)
        try:
            receipt = _issue(execution_id, config, origin, seed, late)
        except AppendFailed:
            break
        if receipt is not None and (before is None or receipt.id != before.id):
            issued += 1
    return issued


def citation(execution_ids: list[int]) -> dict[int, dict]:
    """Returns {execution_id: {"receipt_id", "log_index", "issued_at"}} of the newest receipts."""
    if not execution_ids:
        return {}
    rows = db.session.scalars(
        select(Receipt).where(Receipt.execution_id.in_(execution_ids)).order_by(Receipt.seq)
    )
    found = {}
    for row in rows:
        found[row.execution_id] = {
            "receipt_id": row.id,
            "log_index": row.log_index,
            "issued_at": iso(row.issued_at),
        }
    return found


def served(receipt: Receipt) -> dict:
    """Returns the receipt, its signature and its log index as the API serves them."""
    return {
        "receipt": json.loads(receipt.body),
        "signature": receipt.signature,
        "log_index": receipt.log_index,
    }
