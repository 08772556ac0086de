"""The two writes of an answer's common path, as prebuilt table statements.

Most answers of any job are asked once and answered at once. Each such answer writes twice,
because durability asks for both: the attempt is recorded (and committed) before the call, so a
worker that dies mid-call leaves a trace and the next owner never asks blindly more often than
`max_attempts`; the answer is stored after it. Both used to load the answer as an ORM object,
change it and flush it. Here each is one `UPDATE` whose `WHERE` clause carries the condition the
ORM path checked in Python (the answer is still `queued`, or still `running`), built once: no
`SELECT`, no identity map, no unit of work. When a statement matches nothing the caller takes
the ORM path in portal/engine/execution.py, which handles every other case (a retry, an answer
a stopped worker left running, one that ended meanwhile).

Neither statement renews the lease: the caller does that first, in the same transaction, and it
is what makes a write conditional on this worker still owning the execution.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import bindparam, update

from portal import compare, prices, providers, redact
from portal.models import Answer
from portal.status import RunStatus
from portal.storable import storable_text

MAX_OUTPUT_CHARS = 100_000

_ANSWERS = Answer.__table__

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
    params = {f"new_{name}": values[name] for name in _COMPLETED_COLUMNS}
    params["answer_id"] = answer_id
    return session.execute(_COMPLETE, params).rowcount == 1


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
