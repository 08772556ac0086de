"""The status vocabulary of jobs, executions and answers, defined once, with its predicates.

Every other module, the OpenAPI document, the scripts and the tests take statuses from here;
`tests/test_status_vocabulary.py` fails on a literal list of statuses anywhere else. The values
are `str` enums, so they compare equal to the strings stored in the database and sent as JSON.
The database-side predicates (claimable, has active executions) are in `portal.models`, built
from these tuples.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """The status of an execution or of one answer."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobStatus(StrEnum):
    """The status of a job, derived from its answers (`portal.engine.jobs.refresh_status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Work not ended yet: waiting for a worker or being run by one (jobs, executions, answers).
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
# An execution or answer that has ended.
FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)
# Answers that carry a class: asked and answered, or ended by an error (cancelled ones do not).
CLASSIFIED = (RunStatus.COMPLETED, RunStatus.FAILED)
# A job that has ended: its answers are final and its comparison may be cached.
JOB_ENDED = (JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)

RUN_STATUSES = tuple(s.value for s in RunStatus)
JOB_STATUSES = tuple(s.value for s in JobStatus)


def is_active(status: str | None) -> bool:
    """True for work (job, execution or answer) still queued or running."""
    return status in ACTIVE


def job_ended(status: str | None) -> bool:
    """True once a job has ended (completed, partial, failed or cancelled)."""
    return status in JOB_ENDED


def is_classified(status: str | None) -> bool:
    """True for an answer whose class is defined (completed or failed)."""
    return status in CLASSIFIED
