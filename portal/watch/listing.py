"""The stored changes, newest first: the API's pages, the feed, the job and question pages."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.errors import Invalid
from portal.watch.changes import KINDS
from portal.watch.models import Change

FILTERS = ("question_id", "model_id", "region", "language", "kind", "job_id")
FEED_SIZE = 50


def check_kind(kind: str | None) -> None:
    """Refuses a `kind` filter that names no kind of change."""
    if kind and kind not in KINDS:
        raise Invalid(
            "invalid_parameter", f"kind must be one of {', '.join(KINDS)}", {"kind": kind}
        )


def list_changes(filters: dict, limit: int, cursor: int | None = None):
    """Returns one page of changes, newest first, and the next cursor (a change id) or None."""
    check_kind(filters.get("kind"))
    query = select(Change).order_by(Change.id.desc())
    for name in FILTERS:
        value = filters.get(name)
        if value:
            query = query.where(getattr(Change, name) == value)
    if cursor is not None:
        query = query.where(Change.id < cursor)
    rows = db.session.scalars(query.limit(limit + 1)).all()
    page = rows[:limit]
    return [c.to_dict() for c in page], (str(page[-1].id) if len(rows) > limit else None)


def changes_of_job(job_id: str) -> list[dict]:
    """Returns every change found in one job's answers, in question order."""
    rows = db.session.scalars(
        select(Change)
        .where(Change.job_id == job_id)
        .order_by(Change.model_id, Change.question_index, Change.region, Change.id)
    )
    return [c.to_dict() for c in rows]


def changes_by_answer(answer_ids: list[int]) -> dict[int, list[dict]]:
    """Returns {answer id: its changes} for the answers that have any."""
    found: dict[int, list[dict]] = {}
    if not answer_ids:
        return found
    rows = db.session.scalars(
        select(Change).where(Change.answer_id.in_(answer_ids)).order_by(Change.id)
    )
    for change in rows:
        found.setdefault(change.answer_id, []).append(change.to_dict())
    return found
