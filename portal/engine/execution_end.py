"""The end of one execution: its status from its answers, its signed receipt, its job's status.

`finish` is the last step of `execution.run_execution` (docs/architecture.md, "One
execution"). `ctx` is that execution's context: its ids, its labels and `own()`, which renews
the lease and says whether this worker still holds it.
"""

from __future__ import annotations

from sqlalchemy import select

from portal import logs
from portal.compare import report
from portal.db import db
from portal.engine import jobs
from portal.models import JOB_ENDED, Answer, Execution
from portal.provenance import cosigning, receipts, waiting
from portal.status import RunStatus
from portal.times import utcnow


def finish(ctx) -> None:
    """Ends an execution whose answers have all ended: its status, its receipt (or a note
    that the receipt waits), the job's status, and the comparison once the job has ended."""
    try:
        ended = _end_execution(ctx, with_receipt=True)
    except receipts.AppendFailed as exc:
        # The log refused the receipt (SPEC 9, "Failure to append"): the execution ends all the
        # same, and its receipt waits for the dispatchers' sweep.
        db.session.rollback()
        waiting.failed(ctx.execution_id, str(exc))
        ended = _end_execution(ctx, with_receipt=False, append_error=str(exc))
    if ended is None:
        return
    logs.execution_state(ctx.labels, ended)
    status = jobs.refresh_status(ctx.job_id)
    db.session.commit()
    cosigning.log_grew()
    if status in JOB_ENDED:
        report.precompute(ctx.job_id)


def _end_execution(ctx, with_receipt: bool, append_error: str = "") -> str | None:
    """Ends the execution from its answers and commits, with its receipt or with a note that
    the receipt waits; returns its end status (None when the lease was lost)."""
    if not ctx.own():
        db.session.rollback()
        return None
    execution = db.session.get(Execution, ctx.execution_id, populate_existing=True)
    # Two columns, not the rows: the receipt loads the answers once, with their outputs.
    answers = db.session.execute(
        select(Answer.status, Answer.error)
        .where(Answer.execution_id == ctx.execution_id)
        .order_by(Answer.question_index, Answer.id)
    ).all()
    statuses = [a.status for a in answers]
    failed = [a for a in answers if a.status == RunStatus.FAILED]
    if all(s == RunStatus.COMPLETED for s in statuses):
        execution.status, execution.error = RunStatus.COMPLETED, None
    elif RunStatus.CANCELLED in statuses and not failed:
        execution.status, execution.error = RunStatus.CANCELLED, "cancelled"
    else:
        execution.status = RunStatus.FAILED
        first = failed[0].error if failed else "unfinished answers remain"
        execution.error = f"{len(failed)} of {len(answers)} answers failed: {first}"
    execution.finished_at = utcnow()
    # lease_owner stays as the record of which worker finished it; the lease itself ends.
    execution.lease_expires_at = None
    # The receipt commits with the end itself (SPEC 9), or the end commits with its wait.
    if with_receipt:
        receipts.record_end(ctx.execution_id)
    else:
        waiting.hold(ctx.execution_id, append_error)
    db.session.commit()
    return execution.status
