"""Watching over time as pages (SPEC section 12): the schedules and their recent jobs, running a
schedule now, the Atom feed of changes, the webhook deliveries (admin), and the `job_changes`
and `question_changes` template globals the job and question pages read."""

from __future__ import annotations

from flask import current_app, request, url_for

from portal import settings
from portal.watch import feed, listing, schedules, webhooks
from portal.web.pages import htmx
from portal.web.pages.blueprint import bp
from portal.web.pages.forms import ActionForm
from portal.web.pages.jobs import admin_required

QUESTION_CHANGES = 50


@bp.app_template_global("job_changes")
def job_changes(job_id: str) -> list[dict]:
    """The changes found in a job's answers since earlier runs ("changed since <job>")."""
    return listing.changes_of_job(job_id)


@bp.app_template_global("question_changes")
def question_changes(question_id: str) -> list[dict]:
    """The newest changes recorded for a question, for its history page."""
    items, _ = listing.list_changes({"question_id": question_id}, QUESTION_CHANGES)
    return items


@bp.get("/schedules")
def list_schedules():
    """Shows each schedule, its next run and its recent jobs."""
    config = settings.current().config
    context = {
        "schedules": schedules.schedule_items(config, recent=schedules.RECENT_RUNS),
        "action_form": ActionForm(),
        "webhook_target": config.watch.webhook_target,
    }
    return htmx.render("schedules.html", "partials/schedules_body.html", context)


@bp.post("/schedules/<name>/run")
@admin_required
def run_schedule(name: str):
    """Submits a schedule's job now, as the API's run does."""
    schedule = schedules.find_schedule(name, settings.current().config)
    job = schedules.run_now(schedule)
    return htmx.redirect_to(url_for("pages.job_detail", job_id=job.id))


@bp.get("/feeds/changes.atom")
def changes_feed():
    """The newest changes as an Atom 1.0 feed, optionally of one question."""
    question_id = request.args.get("question_id") or None
    items, _ = listing.list_changes({"question_id": question_id}, listing.FEED_SIZE)
    home = url_for("pages.list_schedules", _external=True)
    if question_id:
        home = url_for("pages.question_history", question_id=question_id, _external=True)
    xml = feed.atom(
        items,
        feed_url=request.url,
        home_url=home,
        portal_key=settings.current().portal_public_key,
        cell_url=lambda c: url_for(
            "pages.cell_detail",
            job_id=c["job_id"],
            model_id=c["model_id"],
            index=c["question_index"],
            _external=True,
        ),
        subtitle=f"Changes of {question_id}" if question_id else "Every question",
    )
    return current_app.response_class(xml, mimetype="application/atom+xml")


@bp.get("/webhooks")
@admin_required
def list_webhooks():
    """Shows every webhook delivery's attempts and outcome (admin); never the URL in full."""
    watch = settings.current().config.watch
    context = {
        "webhook_target": watch.webhook_target,
        "deliveries": webhooks.deliveries_page(),
        "max_attempts": watch.webhook_max_attempts,
    }
    return htmx.render("webhooks.html", "partials/webhooks_body.html", context)
