"""Watching over time (SPEC section 12): the schedules, running one now, and the changes."""

from __future__ import annotations

from flask import jsonify, request, url_for

from portal import settings
from portal.watch import listing, schedules
from portal.web import params
from portal.web.api.answers import job_document
from portal.web.api.blueprint import bp
from portal.web.api.jobs import require_admin
from portal.web.paging import page_args


@bp.get("/schedules")
def list_schedules():
    """Lists the configured schedules with their next run and last job."""
    return jsonify(items=schedules.schedule_items(settings.current().config), next=None)


@bp.post("/schedules/<name>/run")
def run_schedule(name: str):
    """Submits a schedule's job now, signed with the portal's key (admin bearer token)."""
    require_admin()
    schedule = schedules.find_schedule(name, settings.current().config)
    job = schedules.run_now(schedule)
    response = jsonify(job=job_document(job))
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    return response


@bp.get("/changes")
def list_changes():
    """Lists the changes found between runs, newest first, with filters and a cursor."""
    filters = {name: request.args.get(name) or None for name in listing.FILTERS}
    filters["region"] = params.region_id(filters["region"], settings.current().config)
    limit, cursor = page_args(request.args)
    items, next_cursor = listing.list_changes(filters, limit, cursor)
    return jsonify(items=items, next=next_cursor)
