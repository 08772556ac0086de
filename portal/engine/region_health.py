"""Each region's health from its recent provider calls, for the /regions page and the API.

Over the last hour (`WINDOW`), counting the provider calls of answers that ended `completed`
or `failed` (an answer never called, `attempts` 0, is left out). An answer asked `attempts`
times made that many calls: a completed one failed all but its last, a failed one failed them
all. So three 503s and then an answer are four calls and three failures, not one success
(issue 20). The error rate is failed calls / calls; p50 latency is the median latency of the
completed answers (the one call of each that succeeded). The last success is the newest
completed answer of any age. A region whose every call in the window failed is `failing`; one
with no call in the window is `idle`; one with some failed calls is `degraded`; else `ok`.
"""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from sqlalchemy import func, select

from portal.config import BeaconConfig
from portal.db import db
from portal.models import Answer, Execution
from portal.status import CLASSIFIED, RunStatus
from portal.times import iso, utcnow

WINDOW = timedelta(hours=1)


def _empty() -> dict:
    """One region's calls, failed calls, and its completed answers' latencies."""
    return {"calls": 0, "failed": 0, "latencies": []}


def region_health(config: BeaconConfig, now: datetime | None = None) -> dict[str, dict]:
    """Returns {region id: health} for every configured region (see the module docstring)."""
    now = now or utcnow()
    since = now - WINDOW
    ended = (
        select(Execution.region, Answer.status, Answer.attempts, Answer.latency_ms)
        .join(Execution, Answer.execution_id == Execution.id)
        .where(
            Answer.finished_at >= since,
            Answer.attempts > 0,
            Answer.status.in_(CLASSIFIED),
        )
    )
    calls: dict[str, dict] = {r: _empty() for r in config.regions}
    for region, status, attempts, latency in db.session.execute(ended):
        entry = calls.setdefault(region, _empty())
        entry["calls"] += attempts
        if status == RunStatus.COMPLETED:
            entry["failed"] += attempts - 1
            if latency is not None:
                entry["latencies"].append(latency)
        else:
            entry["failed"] += attempts
    last_success = dict(
        db.session.execute(
            select(Execution.region, func.max(Answer.finished_at))
            .join(Execution, Answer.execution_id == Execution.id)
            .where(Answer.status == RunStatus.COMPLETED)
            .group_by(Execution.region)
        ).all()
    )
    db.session.commit()
    health = {}
    for region in config.regions:
        entry = calls[region]
        total = entry["calls"]
        if total == 0:
            state = "idle"
        elif entry["failed"] == total:
            state = "failing"
        elif entry["failed"]:
            state = "degraded"
        else:
            state = "ok"
        latencies = entry["latencies"]
        health[region] = {
            "status": state,
            "window_s": int(WINDOW.total_seconds()),
            "calls": total,
            "failed": entry["failed"],
            "error_rate": round(entry["failed"] / total, 4) if total else None,
            "p50_latency_ms": round(statistics.median(latencies)) if latencies else None,
            "last_success_at": iso(last_success.get(region)),
        }
    return health
