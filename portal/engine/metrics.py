"""Prometheus metrics (SPEC section 6): what the engine counts, and `/metrics`'s text.

Two sources, so the numbers stay right when several processes serve the portal:

- Job and answer counts are read from the database when `/metrics` is scraped: every worker
  process and every instance writes there, so any one of them can answer for all.
- Call latency histograms, retries, lease recoveries and pool slots are counted in the process
  that does the work. Under gunicorn, `gunicorn.conf.py` points `PROMETHEUS_MULTIPROC_DIR` at
  one folder per server before the workers start; prometheus-client then keeps each worker's
  values in a file there and `/metrics` adds them up across the server's workers. Without it
  (one process, e.g. `flask beacon worker`) the values live in this process's memory.

See docs/deploy.md ("Metrics").
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from portal import settings
from portal.db import db
from portal.models import Answer, Execution, Job
from portal.provenance import cosigning, tlog, waiting
from portal.status import JOB_STATUSES

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Provider calls run from well under a second (a warm small model) to minutes (a cold start).
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

CALL_SECONDS = Histogram(
    "beacon_provider_call_seconds",
    "Provider call latency in seconds, by model, region and outcome (ok or error).",
    ["model", "region", "outcome"],
    buckets=LATENCY_BUCKETS,
)
RETRIES = Counter(
    "beacon_provider_retries",
    "Provider calls asked again after a transient failure, by model and region.",
    ["model", "region"],
)
LEASE_RECOVERIES = Counter(
    "beacon_lease_recoveries",
    "Executions taken over after their worker stopped renewing the lease.",
)
HANDED_BACK = Counter(
    "beacon_executions_handed_back",
    "Executions a stopping worker handed back to the queue unfinished.",
)
WRITE_BATCHES = Histogram(
    "beacon_answer_write_batch_size",
    "Answers each group commit of a worker process's writer stored or started together.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
POOL_SLOTS = Gauge(
    "beacon_pool_slots",
    "Execution pool slots of the live worker processes, by state (used or free).",
    ["state"],
    multiprocess_mode="livesum",
)


def observe_call(labels: dict, seconds: float, ok: bool) -> None:
    """Counts one provider call's latency under its model and region."""
    outcome = "ok" if ok else "error"
    CALL_SECONDS.labels(labels["model"], labels["region"], outcome).observe(seconds)


def set_pool(used: int, free: int) -> None:
    """Publishes this process's pool occupancy."""
    POOL_SLOTS.labels("used").set(used)
    POOL_SLOTS.labels("free").set(free)


class _Families:
    """A collector that hands out metric families computed beforehand."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return self.families


def database_families() -> list:
    """Reads job and answer counts from the database (in an app context)."""
    jobs = GaugeMetricFamily("beacon_jobs", "Jobs by status, from the database.", labels=["status"])
    by_status = dict.fromkeys(JOB_STATUSES, 0)
    for status, count in db.session.execute(select(Job.status, func.count()).group_by(Job.status)):
        by_status[status] = count
    for status, count in by_status.items():
        jobs.add_metric([status], count)
    answers = GaugeMetricFamily(
        "beacon_answers",
        "Answers by status, model and region, from the database.",
        labels=["status", "model", "region"],
    )
    rows = db.session.execute(
        select(Answer.status, Execution.model_id, Execution.region, func.count())
        .join(Execution, Answer.execution_id == Execution.id)
        .group_by(Answer.status, Execution.model_id, Execution.region)
        .order_by(Execution.model_id, Execution.region, Answer.status)
    )
    for status, model, region, count in rows:
        answers.add_metric([status, model, region], count)
    families = [jobs, answers, *log_families()]
    db.session.commit()
    return families


def log_families() -> list:
    """Reads the transparency log's size, its waiting receipts and each witness's cosigned
    size from the database (SPEC section 9)."""
    size, _ = tlog.head()
    log_size = GaugeMetricFamily("beacon_log_size", "Entries in the transparency log.")
    log_size.add_metric([], size)
    waiting_now = GaugeMetricFamily(
        "beacon_receipts_waiting",
        "Ended executions whose receipt waits for the log to take appends again.",
    )
    waiting_now.add_metric([], waiting.summary()["waiting"])
    cosigned = GaugeMetricFamily(
        "beacon_witness_cosigned_size",
        "The largest tree size each witness cosigned for this log.",
        labels=["witness"],
    )
    configured = {w.name for w in settings.current().config.witnesses}
    for row in cosigning.witness_rows():
        if row.name in configured:  # a witness taken out of the configuration is not watched
            cosigned.add_metric([row.name], row.cosigned_size)
    return [log_size, waiting_now, cosigned]


def exposition() -> bytes:
    """Returns the Prometheus text for a scrape: this server's processes plus the database."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        registry = REGISTRY
    from_db = CollectorRegistry()
    from_db.register(_Families(database_families()))
    return generate_latest(registry) + generate_latest(from_db)
