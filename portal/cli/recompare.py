"""`flask beacon recompare`: brings ended jobs' comparisons and stored classes up to date.

A cached comparison carries the classification rules' version and the embedding model's id
(`portal.compare.report.cache_key`); after either changes, every ended job's comparison is
recomputed on its next view anyway. This command does it for all of them at once, so no view
waits, and says how many answers changed class.
"""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from portal import settings
from portal.compare import report
from portal.compare.similarity import semantic_available
from portal.db import db
from portal.engine.jobs import find_job
from portal.errors import NotFound
from portal.models import Job
from portal.status import JOB_ENDED


@click.command("recompare")
@click.option("--job", "job_ids", multiple=True, help="only this job id (repeatable)")
@with_appcontext
def recompare_command(job_ids: tuple[str, ...]):
    """Recomputes the stale comparisons and classes of ended jobs (after a rules change)."""

    query = select(Job.id, Job.status).order_by(Job.pk)
    if job_ids:
        query = query.where(Job.id.in_(job_ids))
    rows = db.session.execute(query).all()
    missing = sorted(set(job_ids) - {job_id for job_id, _ in rows})
    if missing:
        raise click.ClickException(f"job_not_found: no job with id {', '.join(missing)}")
    semantic = settings.current().semantic and semantic_available()
    ended = [job_id for job_id, status in rows if status in JOB_ENDED]
    recomputed = changed = 0
    for job_id in ended:
        try:
            job = find_job(job_id)
        except NotFound:  # deleted since the listing
            continue
        cached = job.comparison_cache or {}
        if cached.get("key") == report.cache_key(job, semantic):
            db.session.rollback()
            continue
        before = {a.id: a.classification for e in job.executions for a in e.answers}
        report.job_comparison(job)
        changed += sum(before[a.id] != a.classification for e in job.executions for a in e.answers)
        recomputed += 1
    click.echo(
        f"recompared {recomputed} of {len(ended)} ended jobs "
        f"({len(rows) - len(ended)} still running); {changed} answers changed class"
    )
