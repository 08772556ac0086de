"""Receipts the log could not take yet (SPEC section 9, "Failure to append").

A failed append never holds a job back: the execution ends without its receipt, a
`receipt_waits` row says the receipt waits, and the dispatchers' sweep appends it once the log
takes appends again (portal/provenance/receipts.py). Each failed attempt counts in
`beacon_log_append_failures_total` (this process's counter, added up across a server's workers
like the engine's); `beacon_receipts_waiting` and `/ready` read the rows, so any process answers
for all: `/ready` answers 503 naming the log while a receipt has waited over a minute.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from prometheus_client import Counter
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.db import UTCDateTime, db
from portal.models import Execution
from portal.provenance.log_models import ReceiptWait
from portal.times import utcnow

# How long a receipt may wait before /ready says the log is not taking appends.
READY_AFTER_S = 60
# A failing log is retried by every sweep (each 2 s per dispatcher); one log line a minute.
LOG_EVERY_S = 60.0
log = logging.getLogger(__name__)

APPEND_FAILURES = Counter(
    "beacon_log_append_failures",
    "Receipt appends the transparency log refused (the receipt waits for the sweep).",
)
_last_logged = 0.0


def failed(execution_id: int, error: str) -> None:
    """Counts one failed append and logs it (at most once a minute per process at ERROR)."""
    global _last_logged
    APPEND_FAILURES.inc()
    now = time.monotonic()
    if now - _last_logged >= LOG_EVERY_S:
        _last_logged = now
        log.error(
            "the transparency log refused the receipt of execution %d; it waits for the "
            "sweep (later failures are logged at most once a minute): %s",
            execution_id,
            error,
        )
    else:
        log.debug("append of execution %d's receipt failed again: %s", execution_id, error)


def hold(execution_id: int, error: str) -> None:
    """Records, in the caller's transaction, that the execution's receipt waits."""
    now = utcnow()
    values = {"execution_id": execution_id, "since": now, "attempts": 1}
    values |= {"last_error": error[:2000], "last_attempt_at": now}
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(ReceiptWait).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["execution_id"],
        set_={
            "attempts": ReceiptWait.attempts + 1,
            "last_error": statement.excluded.last_error,
            "last_attempt_at": statement.excluded.last_attempt_at,
        },
    )
    db.session.execute(statement)


def release(execution_id: int) -> None:
    """Drops the execution's wait, in the transaction that appends its receipt."""
    db.session.execute(delete(ReceiptWait).where(ReceiptWait.execution_id == execution_id))


def waiting_ids(limit: int | None = None) -> list[int]:
    """Returns the executions whose receipt waits, the longest waiting first."""
    query = select(ReceiptWait.execution_id).order_by(ReceiptWait.since, ReceiptWait.execution_id)
    return list(db.session.scalars(query.limit(limit) if limit else query))


def summary(now: datetime | None = None) -> dict:
    """Returns how many receipts wait, how many for over READY_AFTER_S since their execution
    ended, and the oldest such end."""
    now = now or utcnow()
    ended = func.coalesce(Execution.finished_at, ReceiptWait.since, type_=UTCDateTime)
    late = ended < now - timedelta(seconds=READY_AFTER_S)
    row = db.session.execute(
        select(
            func.count(),
            func.count().filter(late),
            func.min(ended, type_=UTCDateTime),
        )
        .select_from(ReceiptWait)
        .join(Execution, Execution.id == ReceiptWait.execution_id, isouter=True)
    ).one()
    return {"waiting": row[0], "overdue": row[1], "oldest": row[2]}
