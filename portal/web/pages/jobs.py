"""The HTML pages (SPEC section 7), rendered with Jinja and htmx; all work with JavaScript off.

Every page is built from the serializers' dicts (`Job.to_dict`, `Execution.to_dict`) plus the
comparison, so a page, its htmx fragment and the JSON API show the same facts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from functools import wraps

from flask import abort, current_app, request, url_for
from flask_wtf.csrf import CSRFProtect, generate_csrf
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal import prices, settings
from portal.compare import report
from portal.config import BeaconConfig
from portal.db import db
from portal.engine import jobs
from portal.engine.jobs import find_execution, find_job
from portal.errors import DomainError, RateLimited
from portal.intake import signing
from portal.intake import submit as intake
from portal.models import Job, answer_counts
from portal.status import JobStatus
from portal.times import utcnow
from portal.web import admin, paging, params
from portal.web.pages import answer_views, htmx
from portal.web.pages.blueprint import bp
from portal.web.pages.forms import ActionForm, JobForm, LoginForm
from portal.web.pages.job_view import answer_view, job_detail_view, job_row_view

csrf = CSRFProtect()
PAGE_SIZE = 20
# A job has at most this many questions (intake's limits), so no page of them goes further.
MAX_PAGE = 100_000
FOLD_CHARS = 600
STATUS_MARKS = {
    JobStatus.QUEUED: "…",
    JobStatus.RUNNING: "◔",
    JobStatus.COMPLETED: "✓",
    JobStatus.PARTIAL: "◐",
    JobStatus.FAILED: "✗",
    JobStatus.CANCELLED: "■",
}
# Intake refusals are shown next to the form field they concern.
FIELD_OF = {
    "unknown_model": "models",
    "models": "models",
    "unknown_region": "regions",
    "constraints.regions": "regions",
    "runs": "runs",
    "too_many_answers": "runs",
    "over_budget": "runs",
    "unknown_language": "languages",
    "languages": "languages",
}


@bp.record_once
def _setup(state) -> None:
    # CSRF is checked for page POSTs only (form field or the X-CSRFToken header that
    # <body hx-headers> adds); the JSON API is guarded by signatures and the bearer token.
    state.app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # A job page stays open while its job runs; its token lasts as long as the session.
    state.app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf.init_app(state.app)


@bp.before_app_request
def _protect_pages() -> None:
    if request.blueprint == bp.name and current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


@bp.after_app_request
def _vary(response):
    if response.mimetype == "text/html":
        htmx.add_vary(response)
    return response


@bp.app_context_processor
def _layout_context() -> dict:
    return {
        "htmx_partial": htmx.is_partial(),
        "htmx_version": htmx.library_version(),
        "htmx_headers": json.dumps({"X-CSRFToken": generate_csrf()}),
        "admin_token_set": settings.current().admin_token is not None,
        "is_admin": _is_admin(),
        "status_marks": STATUS_MARKS,
        "fold_chars": FOLD_CHARS,
    }


@bp.app_template_filter("age")
def age(value: str | None) -> str:
    """Formats an ISO time as a short age: "12 s ago", "3 min ago", "2 h ago", "4 d ago"."""
    if not value:
        return "—"
    seconds = max(0, int((utcnow() - datetime.fromisoformat(value)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


@bp.app_template_filter("usd")
def usd(value: float | None) -> str:
    """Formats USD for people: "$0.00213", "$1.50"; "—" when unknown."""
    return "—" if value is None else prices.format_usd(value)


def _is_admin() -> bool:
    s = settings.current()
    if s.admin_token is None:
        # Without a token only a development portal is open to everyone.
        return s.env != "production"
    return admin.signed_in()


def admin_required(view):
    """Sends a visitor to /login first when BEACON_ADMIN_TOKEN is set."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        s = settings.current()
        if s.admin_token is None and s.env == "production":
            abort(403, "The job form and job actions need BEACON_ADMIN_TOKEN set in production.")
        if not _is_admin():
            return htmx.redirect_to(url_for("pages.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


@bp.get("/static-lib/htmx.min.js")
def htmx_library():
    """Serves htmx from the installed django-js-lib-htmx package with a long cache."""
    return htmx.send_library()


@bp.get("/jobs")  # applied last, so "/" stays the address url_for builds
@bp.get("/")
def list_jobs():
    """Lists recent jobs, newest first, a page at a time."""
    query = select(Job).order_by(Job.pk.desc()).options(selectinload(Job.executions))
    before = paging.integer(
        request.args, "before", column=Job.pk, message="before must be a value from a link"
    )
    if before is not None:
        query = query.where(Job.pk < before)
    rows = db.session.scalars(query.limit(PAGE_SIZE + 1)).all()
    page = rows[:PAGE_SIZE]
    counts = answer_counts([j.pk for j in page])
    context = {
        "jobs": [job_row_view(j.to_dict(counts=counts[j.pk])) for j in page],
        "older": page[-1].pk if len(rows) > PAGE_SIZE else None,
        "paged": before is not None,
    }
    return htmx.render("jobs.html", "partials/job_table.html", context)


@bp.get("/jobs/<job_id>/row")
def job_row(job_id: str):
    """Returns one job's row of the list; htmx polls it while the job is active."""
    job = find_job(job_id, load_answers=False)
    if not htmx.is_partial():
        return htmx.redirect_to(url_for("pages.job_detail", job_id=job.id))
    context = {"job": job_row_view(job.to_dict())}
    return htmx.render("jobs.html", "partials/job_row.html", context, 286 if job.ended else 200)


@bp.route("/jobs/new", methods=["GET", "POST"])
@admin_required
def create_job():
    """Shows the job form; on submit signs the spec with the portal key and queues it."""
    config = settings.current().config
    form = JobForm(config)
    status = 422 if form.is_submitted() else 200
    if form.validate_on_submit():
        spec = signing.sign(form.job_spec(), settings.current().signing_seed)
        try:
            # The form spends provider calls as the API does, so it shares the API's limit.
            current_app.extensions["beacon_limiter"].check(request.remote_addr or "unknown")
            job, _ = intake.submit_jobspec(json.dumps(spec), intake.intake_context(), source="form")
        except DomainError as exc:
            field = getattr(form, _field_for(exc))
            field.errors = [*field.errors, exc.message]
            status = 429 if isinstance(exc, RateLimited) else status
        else:
            return htmx.redirect_to(url_for("pages.job_detail", job_id=job.id))
    return _job_form(form, config, "partials/job_form.html", status)


@bp.post("/jobs/new/estimate")
@admin_required
def estimate_job():
    """Shows what the form's job would cost at most, without submitting it."""
    config = settings.current().config
    return _job_form(JobForm(config), config, "partials/job_estimate.html")


def _job_form(form: JobForm, config: BeaconConfig, partial: str, status: int = 200):
    context = {
        "form": form,
        "question_groups": question_groups(config),
        "beacon": config,
        "estimate": form.estimate(config),
    }
    return htmx.render("new_job.html", partial, context, status)


def _field_for(exc: DomainError) -> str:
    for key in (*(exc.fields or {}), exc.code):
        if key in FIELD_OF:
            return FIELD_OF[key]
    return "prompt"


@bp.get("/jobs/<job_id>")
def job_detail(job_id: str):
    """Shows a job: header, live progress, one group per model with its regions side by side."""
    # The view reads only the answers it shows (job_view.job_detail_view).
    job = find_job(job_id, load_answers=False)
    differs_only = request.args.get("differs") == "1"
    baseline = params.region_id(request.args.get("baseline"), settings.current().config) or None
    if baseline is not None and baseline not in job.regions:
        abort(404, f"This job has no region {baseline!r} to compare against.")
    model = request.args.get("model") or None
    if model is not None and model not in job.models:
        abort(404, f"This job has no model {model!r}.")
    page = paging.integer(request.args, "page", default=1, minimum=1, maximum=MAX_PAGE)
    context = job_detail_view(job, differs_only, baseline, model, page)
    context["action_form"] = ActionForm()
    status = 286 if htmx.is_partial() and job.ended else 200
    return htmx.render("job.html", "partials/job_live.html", context, status)


@bp.post("/jobs/<job_id>/cancel")
@admin_required
def cancel_job(job_id: str):
    """Cancels a job with the engine's own cancel, as the API does."""
    return _job_action(job_id, "cancel")


@bp.post("/jobs/<job_id>/retry")
@admin_required
def retry_job(job_id: str):
    """Queues a job's failed answers again with the engine's own retry, as the API does."""
    return _job_action(job_id, "retry")


def _job_action(job_id: str, action: str):
    find_job(job_id, load_answers=False)
    if settings.current().admin_token is None:
        abort(403, "Cancel and retry need BEACON_ADMIN_TOKEN to be set on the server.")
    if action == "cancel":
        jobs.cancel(job_id)
    else:
        jobs.retry(job_id, settings.current().config)
    return htmx.redirect_to(url_for("pages.job_detail", job_id=job_id))


@bp.get("/executions/<int:execution_id>")
def execution_detail(execution_id: int):
    """Shows one execution with all its answers and timings."""
    execution = find_execution(execution_id)
    context = answer_views.execution_context(execution)
    # Classes come from the job's comparison, as on the job page.
    comparison = report.job_comparison(find_job(execution.job_id, load_answers=False))
    entries = {
        entry["answer_id"]: entry
        for model in comparison["models"]
        for question in model["questions"]
        for entry in question["answers"]
    }
    doc = context["execution"]
    doc["answers"] = [answer_view(a, entries.get(a["id"])) for a in doc["answers"]]
    return htmx.render("execution.html", "partials/execution_body.html", context)


@bp.get("/questions")
def list_questions():
    """Shows the question bank by category."""
    groups = question_groups(settings.current().config)
    return htmx.render("questions.html", "partials/question_bank.html", {"groups": groups})


@bp.get("/docs/api")
def api_docs():
    """Points to the JSON API, its OpenAPI document and how to submit a signed JobSpec."""
    s = settings.current()
    context = {"portal_public_key": s.portal_public_key, "beacon": s.config}
    return htmx.render("api_docs.html", "partials/api_docs_body.html", context)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Asks for BEACON_ADMIN_TOKEN once per session."""
    token = settings.current().admin_token
    next_url = htmx.safe_path(request.args.get("next")) or url_for("pages.list_jobs")
    if token is None:
        return htmx.redirect_to(next_url)
    form = LoginForm()
    status = 422 if form.is_submitted() else 200
    if form.is_submitted():
        # Every submitted form counts in the admin-token throttle, valid or not (docs/security.md).
        given = form.token.data if form.validate() else None
        try:
            if admin.check_token(given, request.remote_addr):
                admin.sign_in()
                return htmx.redirect_to(next_url)
        except RateLimited as exc:
            wait = exc.headers["Retry-After"]
            form.token.errors, status = [f"Too many login attempts; try again in {wait} s."], 429
        else:
            if given is not None:
                form.token.errors = ["That is not the admin token."]
    context = {"form": form, "next_url": next_url}
    return htmx.render("login.html", "partials/login_form.html", context, status)


@bp.post("/logout")
def logout():
    """Ends the admin session on the server and forgets the cookie's session."""
    admin.sign_out()
    return htmx.redirect_to(url_for("pages.list_jobs"))


def question_groups(config: BeaconConfig) -> dict[str, list]:
    """Returns the question bank grouped by category, in configuration order."""
    groups: dict[str, list] = defaultdict(list)
    for question in config.questions.values():
        groups[question.category].append(question)
    return dict(groups)
