"""A running job's cost and its budget (SPEC section 13).

Each completed answer with a known cost adds it to its job's `cost_usd` in the transaction that
stores the answer (one prebuilt `UPDATE ... RETURNING`; answers without a cost write nothing
more). Once the sum reaches the job's budget (`jobs.max_cost_usd`), the job's unstarted answers,
and its executions that had not started, are cancelled with the reason "budget reached"; calls
already in flight finish and are kept. The estimate at submission is an upper bound, so this
happens only when a provider counts more tokens than the bound allows (docs/providers.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, exists, func, select, update

from portal.db import db
from portal.models import ACTIVE, Answer, Execution, Job

BUDGET_REACHED = "budget reached"

_JOBS = Job.__table__
_CHARGE = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"))
    .values(cost_usd=func.coalesce(_JOBS.c.cost_usd, 0.0) + bindparam("cost"))
    .returning(_JOBS.c.cost_usd, _JOBS.c.max_cost_usd)
)


def charge(session, job_id: str, cost: float) -> bool:
    """Adds an answer's cost to its job's; True when it took the job to its budget (a free
    answer never does: a budget of 0 allows free models)."""
    row = session.execute(_CHARGE, {"job_id": job_id, "cost": cost}).first()
    if row is None or row.max_cost_usd is None or cost <= 0:
        return False
    return row.cost_usd >= row.max_cost_usd


def stop_unstarted(job_id: str, now: datetime) -> int:
    """Cancels the job's queued answers and not-yet-started executions, "budget reached";
    returns how many answers. The caller commits (and issues the ended executions' receipts)."""
    execution_ids = select(Execution.id).where(Execution.job_id == job_id)
    stopped = db.session.execute(
        update(Answer)
        .where(Answer.execution_id.in_(execution_ids), Answer.status == "queued")
        .values(
            status="cancelled",
            error=BUDGET_REACHED,
            finished_at=now,
            classification="technical_failure",
        )
    ).rowcount
    # An execution nobody has claimed has nothing left to ask: it ends here, not in a worker.
    db.session.execute(
        update(Execution)
        .where(
            Execution.job_id == job_id,
            Execution.status == "queued",
            ~exists().where(Answer.execution_id == Execution.id, Answer.status.in_(ACTIVE)),
        )
        .values(status="cancelled", finished_at=now, error=BUDGET_REACHED)
    )
    return stopped
