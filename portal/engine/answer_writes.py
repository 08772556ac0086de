"""The writes of an answer's common path, as prebuilt table statements.

Most answers of any job are asked once and answered at once. Durability asks for two writes per
answer: the attempt is recorded (and committed) before the call, so a worker that dies mid-call
leaves a trace and the next owner never asks blindly more often than `max_attempts`; the answer
is stored after it. Each is one `UPDATE` whose `WHERE` clause carries the condition the ORM path
checked in Python (the answer is still `queued`, or still `running`), built once: no `SELECT`,
no identity map, no unit of work. When a statement matches nothing the caller takes the ORM
path in portal/engine/execution.py, which handles every other case (a retry, an answer a
stopped worker left running, one that ended meanwhile).

`write` puts one answer's store and the next answer's start in one transaction (`AfterCall`),
for any number of executions at once: one lease renewal that also reads each job's cancel flag
and deadline, the stores, the costs, then one `UPDATE` starting every next answer. The next
attempt is still committed before its call. portal/engine/writer.py commits the writes of the
answers that end together in one transaction (docs/reliability.md, "Group commits").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update

from portal import compare, prices, providers, redact
from portal.engine import budget
from portal.models import Answer, Execution, Job
from portal.status import RunStatus
from portal.storable import storable_text

MAX_OUTPUT_CHARS = 100_000

_ANSWERS = Answer.__table__
_EXECUTIONS = Execution.__table__
_JOBS = Job.__table__

# Written when a call succeeded; each is bound from `completed_values`.
_COMPLETED_COLUMNS = (
    "output",
    "output_sha256",
    "provider",
    "provider_model",
    "started_at",
    "finished_at",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "classification",
    "served_by",
)


def _bound(name: str):
    # Named apart from the column (SQLAlchemy reserves the column's own name in SET), typed by
    # it so UTC datetimes and JSON go through the column's own conversion.
    return bindparam(f"new_{name}", type_=_ANSWERS.c[name].type)


_START = (
    update(_ANSWERS)
    .where(_ANSWERS.c.id == bindparam("answer_id"), _ANSWERS.c.status == RunStatus.QUEUED)
    .values(status=RunStatus.RUNNING, attempts=_ANSWERS.c.attempts + 1)
    .returning(_ANSWERS.c.prompt)
)

# Every execution of a batch in one statement: renews the leases this worker still holds (which
# locks those rows until the commit) and reads each one's job flags, which decide whether the
# next answer may start. Scalar subqueries, because SQLite's RETURNING names only its own table.
_RENEW_READING_JOB = (
    update(_EXECUTIONS)
    .where(
        _EXECUTIONS.c.id.in_(bindparam("ids", expanding=True)),
        _EXECUTIONS.c.lease_owner == bindparam("owner"),
        _EXECUTIONS.c.status == RunStatus.RUNNING,
    )
    .values(lease_expires_at=bindparam("until"))
    .returning(
        _EXECUTIONS.c.id,
        *(
            select(_JOBS.c[name])
            .where(_JOBS.c.id == _EXECUTIONS.c.job_id)
            .scalar_subquery()
            .label(name)
            for name in ("cancel_requested_at", "deadline_at")
        ),
    )
)

_START_MANY = (
    update(_ANSWERS)
    .where(
        _ANSWERS.c.id.in_(bindparam("ids", expanding=True)), _ANSWERS.c.status == RunStatus.QUEUED
    )
    .values(status=RunStatus.RUNNING, attempts=_ANSWERS.c.attempts + 1)
    .returning(_ANSWERS.c.id, _ANSWERS.c.prompt)
)

_COMPLETE = (
    update(_ANSWERS)
    .where(_ANSWERS.c.id == bindparam("answer_id"), _ANSWERS.c.status == RunStatus.RUNNING)
    .values(
        status=RunStatus.COMPLETED,
        error=None,
        **{name: _bound(name) for name in _COMPLETED_COLUMNS},
    )
)


def start_queued(session, answer_id: int) -> str | None:
    """Marks a queued answer running and counts its attempt; returns its prompt.

    None when the answer is not `queued` (nothing was written): the caller decides by the ORM.
    """
    row = session.execute(_START, {"answer_id": answer_id}).first()
    return None if row is None else row.prompt


def store_completed(session, answer_id: int, values: dict) -> bool:
    """Stores a successful call's outcome on a running answer; False when it was not running.

    `values` holds every name of `_COMPLETED_COLUMNS`.
    """
    return session.execute(_COMPLETE, _completed_params(answer_id, values)).rowcount == 1


def _completed_params(answer_id: int, values: dict) -> dict:
    params = {f"new_{name}": values[name] for name in _COMPLETED_COLUMNS}
    params["answer_id"] = answer_id
    return params


def _store_all(session, stores: list[AfterCall]) -> None:
    """Stores the successful calls of a batch and sets each write's `stored`."""
    if len(stores) < 2 or session.get_bind().dialect.name != "postgresql":
        for w in stores:
            w.stored = store_completed(session, w.answer_id, w.values)
        return
    # One executemany, which psycopg sends as a pipeline: one round trip, not one per answer.
    params = [_completed_params(w.answer_id, w.values) for w in stores]
    if session.execute(_COMPLETE, params).rowcount == len(stores):
        for w in stores:
            w.stored = True
        return
    # Some answer had ended meanwhile (rare): the stored ones hold what was written.
    held = {
        row.id: (row.output_sha256, row.finished_at)
        for row in session.execute(
            select(_ANSWERS.c.id, _ANSWERS.c.output_sha256, _ANSWERS.c.finished_at).where(
                _ANSWERS.c.id.in_([w.answer_id for w in stores]),
                _ANSWERS.c.status == RunStatus.COMPLETED,
            )
        )
    }
    for w in stores:
        mine = (w.values["output_sha256"], w.values["finished_at"])
        w.stored = held.get(w.answer_id) == mine


@dataclass
class AfterCall:
    """One execution's writes after a successful call: store its answer and start the next.

    `answer_id`/`values` is the answer to store (None: nothing to store), `next_id` the answer
    to start when the job may go on (None: none). `write` fills in the rest.
    """

    execution_id: int
    job_id: str
    answer_id: int | None = None
    values: dict | None = None
    next_id: int | None = None
    owned: bool = False  # this worker still held the lease: nothing is written otherwise
    stored: bool = False  # the answer was still running and is now completed
    reached: bool = False  # its cost took the job to its budget (receipts to issue)
    cancel_requested_at: datetime | None = None
    deadline_at: datetime | None = None
    next_prompt: str | None = None  # the next answer is running, its attempt counted


def write(session, owner: str, lease_s: float, writes: list[AfterCall], now: datetime) -> None:
    """Adds the writes of `writes` to the session's transaction and fills in their outcomes.

    The caller commits; nothing here commits or yields to another greenlet on SQLite. A next
    answer starts only while its job has no cancel request and its deadline has not passed,
    and never after its job reached its budget here (the budget cancels its queued answers).
    """
    for w in writes:  # a batch that failed is written again one by one: start afresh
        w.owned = w.stored = w.reached = False
        w.next_prompt = None
    rows = session.execute(
        _RENEW_READING_JOB,
        {
            "ids": sorted({w.execution_id for w in writes}),
            "owner": owner,
            "until": now + timedelta(seconds=lease_s),
        },
    ).all()
    jobs = {row.id: row for row in rows}
    for w in writes:
        row = jobs.get(w.execution_id)
        if row is not None:
            w.owned = True
            w.cancel_requested_at, w.deadline_at = row.cancel_requested_at, row.deadline_at
    stores = [w for w in writes if w.owned and w.answer_id is not None]
    _store_all(session, stores)
    reached: set[str] = set()
    for w in stores:
        cost = w.values["cost_usd"]
        if w.stored and cost is not None and budget.charge(session, w.job_id, cost):
            reached.add(w.job_id)
    for job_id in sorted(reached):
        budget.stop_unstarted(job_id, now)
    starting = {w.next_id: w for w in writes if _may_start(w, reached, now)}
    if starting:
        for answer_id, prompt in session.execute(_START_MANY, {"ids": sorted(starting)}):
            starting[answer_id].next_prompt = prompt
    for w in writes:
        w.reached = w.job_id in reached


def _may_start(w: AfterCall, reached: set[str], now: datetime) -> bool:
    if not w.owned or w.next_id is None or w.job_id in reached:
        return False
    if w.cancel_requested_at is not None:
        return False
    return w.deadline_at is None or now < w.deadline_at


def completed_values(
    result: providers.ProviderResult,
    prompt: str,
    price: prices.Price | None = None,
    secrets: redact.Secrets | None = None,
) -> dict:
    """Returns what a successful call stores on its answer: the cleaned text, its SHA-256 (of
    the whole text, before any truncation), timings, tokens, cost, class and who served it; any
    of `secrets` the provider put in its text or its self-description is hidden first."""
    secrets = secrets or redact.Secrets()
    # Whole secrets only in the text: an answer is long, and its words are the evidence.
    text = secrets.scrub(clean_output(result.text), fragments=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if len(text) > MAX_OUTPUT_CHARS:
        text = (
            text[:MAX_OUTPUT_CHARS]
            + f"\n[truncated by the portal: the answer had {len(text)} characters]"
        )
    return {
        "output": text,
        "output_sha256": digest,
        "provider": result.provider,
        "provider_model": result.provider_model,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "latency_ms": result.latency_ms,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "cost_usd": prices.cost_usd(price, result.prompt_tokens, result.completion_tokens),
        "classification": compare.classify(
            text, status=RunStatus.COMPLETED, error=None, prompt=prompt
        ),
        "served_by": secrets.scrub_value(result.served_by) or None,
    }


def clean_output(text: str) -> str:
    """Returns model output as storable text: no NUL characters, no lone surrogates."""
    return storable_text(text)
