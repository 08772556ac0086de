"""A job's evidence file (`beacon-evidence-v1`, docs/provenance.md): its signed spec, every
execution with its answers, the receipts with their inclusion proofs, the checkpoint.

The document is read a chunk of rows at a time (issue 26: a 10,000-answer job's file is
megabytes, and building it whole in memory grew with the job). `evidence_document` returns the
document with its long arrays as iterators; a streaming JSON encoder (web/api/streaming.py)
writes it out with the same bytes as encoding the whole document at once. Between two chunks
the session lets go of its connection, so a slow download holds no database connection or read
transaction; the file is therefore not one snapshot of a job that is still running (an ended
job's answers no longer change).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import selectinload

from portal.db import db
from portal.models import Answer, Execution, Job
from portal.provenance import receipts, tlog
from portal.provenance.log_models import Receipt

FORMAT = "beacon-evidence-v1"
# Rows read per query: bounds the memory a download holds, whatever the job's size. A receipt
# lists every answer of its execution (a hash of each), so fewer of them are read at once.
CHUNK = 500
RECEIPTS_CHUNK = 8


def newest_receipt(job_id: str) -> int | None:
    """Returns the log index of the job's newest receipt, or None while it has none."""
    return db.session.scalar(
        select(func.max(Receipt.log_index))
        .join(Execution, Receipt.execution_id == Execution.id)
        .where(Execution.job_id == job_id)
    )


def evidence_document(job: Job, checkpoint: dict, public_key: str | None) -> dict:
    """Returns the evidence file's document; `executions` and `receipts` are iterators that
    read their rows as they are consumed, inside the caller's app context."""
    return {
        "format": FORMAT,
        "job": {
            "id": job.id,
            "spec_hash": job.spec_hash,
            "signature_scheme": job.signature_scheme,
            "spec": job.spec_raw,
        },
        "executions": _executions(job.id),
        "checkpoint": checkpoint,
        "public_key": public_key,
        "receipts": _receipts(job.id, checkpoint["size"]),
    }


def _executions(job_id: str) -> Iterator[dict]:
    """Each execution as `Execution.to_dict(with_answers=True)` serves it, its answers read
    from one stream of the job's answers in that order (execution, question, id)."""
    docs = [
        e.to_dict()
        for e in db.session.scalars(
            select(Execution).where(Execution.job_id == job_id).order_by(Execution.position)
        )
    ]
    db.session.close()
    answers = _Peekable(_answers(job_id))
    for doc in docs:
        doc["answers"] = answers.take_while(lambda a, mine=doc["id"]: a["execution_id"] == mine)
        yield doc


class _Peekable:
    """An iterator whose next item can be looked at before it is taken."""

    def __init__(self, items: Iterator[dict]):
        self.items = items
        self.ahead: list[dict] = []

    def take_while(self, wanted) -> Iterator[dict]:
        """Yields items while `wanted(item)`; the first other item stays for the next taker."""
        while True:
            if not self.ahead:
                item = next(self.items, None)
                if item is None:
                    return
                self.ahead.append(item)
            if not wanted(self.ahead[0]):
                return
            yield self.ahead.pop()


def _answers(job_id: str) -> Iterator[dict]:
    """The job's answers in execution order, each execution's in `Execution.answers` order
    (question, then id), a chunk at a time."""
    after: tuple[int, int, int] | None = None
    while True:
        query = (
            select(Answer, Execution.position)
            .join(Execution, Answer.execution_id == Execution.id)
            .where(Execution.job_id == job_id)
            .order_by(Execution.position, Answer.question_index, Answer.id)
            .options(selectinload(Answer.judgement))
            .limit(CHUNK)
        )
        if after is not None:
            position, index, answer_id = after
            query = query.where(
                or_(
                    Execution.position > position,
                    and_(Execution.position == position, Answer.question_index > index),
                    and_(
                        Execution.position == position,
                        Answer.question_index == index,
                        Answer.id > answer_id,
                    ),
                )
            )
        rows = db.session.execute(query).all()
        docs = [a.to_dict() for a, _ in rows]
        db.session.close()
        yield from docs
        if len(rows) < CHUNK:
            return
        last, position = rows[-1]
        after = (position, last.question_index, last.id)


def _receipts(job_id: str, size: int) -> Iterator[dict]:
    """The job's receipts in the checkpoint's tree, in log order, each with its inclusion
    proof against that tree."""
    start = 0
    while True:
        rows = db.session.scalars(
            select(Receipt)
            .join(Execution, Receipt.execution_id == Execution.id)
            .where(Execution.job_id == job_id)
            .where(Receipt.log_index >= start, Receipt.log_index < size)
            .order_by(Receipt.log_index)
            .limit(RECEIPTS_CHUNK)
        ).all()
        found = [(r.body, r.signature, r.log_index) for r in rows]
        proofs = [tlog.inclusion(r.log_index, size) for r in rows]
        db.session.close()
        for (body, signature, index), inclusion in zip(found, proofs, strict=True):
            # Decoded one at a time: a decoded receipt is several times its text.
            served = receipts.served(Receipt(body=body, signature=signature, log_index=index))
            yield {**served, "inclusion": inclusion}
        if len(rows) < RECEIPTS_CHUNK:
            return
        start = rows[-1].log_index + 1
