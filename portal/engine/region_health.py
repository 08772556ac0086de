"""Each region's health from its recent provider calls, for the /regions page and the API.

Over the last hour (`WINDOW`), counting answers whose call was made (`attempts > 0`) and that
ended `completed` or `failed`: the error rate is failed / (completed + failed), p50 latency is
the median latency of the completed ones. The last success is the newest completed answer of
any age. A region whose every call in the window failed is `failing`; one with no call in the
window is `idle`; one with some failures is `degraded`; else `ok`.
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
    """Counts of one region's ended calls by status, and its completed calls' latencies."""
    return {**dict.fromkeys(CLASSIFIED, 0), "latencies": []}


def region_health(config: BeaconConfig, now: datetime | None = None) -> dict[str, dict]:
    """Returns {region id: health} for every configured region (see the module docstring)."""
    now = now or utcnow()
    since = now - WINDOW
    ended = (
        select(Execution.region, Answer.status, Answer.latency_ms)
        .join(Execution, Answer.execution_id == Execution.id)
        .where(
            Answer.finished_at >= since,
            Answer.attempts > 0,
            Answer.status.in_(CLASSIFIED),
        )
    )
    calls: dict[str, dict] = {r: _empty() for r in config.regions}
    for region, status, latency in db.session.execute(ended):
        entry = calls.setdefault(region, _empty())
        entry[status] += 1
        if status == RunStatus.COMPLETED and latency is not None:
            entry["latencies"].append(latency)
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
        total = entry["completed"] + entry["failed"]
        if total == 0:
            state = "idle"
        elif entry["completed"] == 0:
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
