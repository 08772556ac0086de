"""The JSON API under /api/v1 (SPEC section 6) and /health."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal import compare, offload, settings
from portal.compare import report
from portal.db import db
from portal.engine import jobs, region_health
from portal.engine.jobs import find_execution, find_job
from portal.errors import ApiError
from portal.intake import submit as intake
from portal.judge import summary
from portal.models import Execution, Job, answer_counts
from portal.questions import prompt_version
from portal.status import JOB_STATUSES, RUN_STATUSES
from portal.web import admin, paging, params, rendering
from portal.web.api import openapi
from portal.web.api.answers import job_document
from portal.web.api.blueprint import bp

EXECUTION_STATUSES = RUN_STATUSES


@bp.post("/jobs")
def create_job():
    """Verifies, stores and queues a signed JobSpec; the same bytes again return the job."""
    # Every attempt counts, refused ones included: signature guessing is what it slows down.
    current_app.extensions["beacon_limiter"].check(request.remote_addr or "unknown")
    if not request.is_json:
        raise ApiError(415, "not_json", "send the JobSpec with Content-Type: application/json")
    ctx = intake.intake_context()
    job, created = intake.submit_jobspec(read_body(ctx.config.intake.max_body_bytes), ctx)
    doc = {"job": job_document(job), "idempotent": not created}
    response = jsonify(doc)
    response.status_code = 202 if created else 200
    response.headers["Location"] = url_for("api.get_job", job_id=job.id)
    return response


def read_body(limit: int) -> bytes:
    """Returns the raw request body, refusing one over `limit` bytes with 413."""
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "too_large", f"the body is {length} bytes; the limit is {limit}")
    stream = request.stream
    if length is None and request.environ.get("wsgi.input_terminated"):
        # A chunked body: Werkzeug's stream stops quietly at MAX_CONTENT_LENGTH, so a body cut
        # there would read as truncated JSON. The server's own (de-chunked) stream tells.
        stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise ApiError(413, "too_large", f"the body is over the limit of {limit} bytes")
    return b"".join(chunks)


@bp.get("/jobs")
def list_jobs():
    """Lists jobs, newest first, by status, with a cursor."""
    # Executions (not answers) tell an ended job's meets_constraints: one query for the page.
    query = select(Job).order_by(Job.pk.desc()).options(selectinload(Job.executions))
    status = request.args.get("status")
    if status:
        _check_choice("status", status, JOB_STATUSES)
        query = query.where(Job.status == status)
    limit, cursor = paging.page_args(request.args, column=Job.pk)
    if cursor is not None:
        query = query.where(Job.pk < cursor)
    jobs = db.session.scalars(query.limit(limit + 1)).all()
    page, more = jobs[:limit], len(jobs) > limit
    counts = answer_counts([j.pk for j in page])
    items = [j.to_dict(counts=counts[j.pk]) for j in page]
    return jsonify(items=items, next=str(page[-1].pk) if more else None)


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    """Returns one job with its counts, executions and answers."""
    doc = {"job": job_document(find_job(job_id, load_answers=False))}
    return rendering.json_response(lambda: doc)


@bp.get("/jobs/<job_id>/comparison")
def get_comparison(job_id: str):
    """Returns how each model's regions differ: classes, similarity, diffs, divergence."""
    # Its answers are read only when the comparison is not already at hand (compare.report).
    job = find_job(job_id, load_answers=False)
    doc = {"comparison": report.job_comparison(job, _baseline())}
    # Megabytes of answers and diffs for a big job: encoded off the event loop.
    return rendering.json_response(lambda: doc)


@bp.get("/jobs/<job_id>/comparison.csv")
def get_comparison_csv(job_id: str):
    """Returns the comparison as CSV, one row per model, question, region and run."""
    job = find_job(job_id, load_answers=False)
    comparison = report.job_comparison(job, _baseline())
    text = offload.run(compare.comparison_csv, comparison)
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{job.id}-comparison.csv"'},
    )


@bp.get("/jobs/<job_id>/summary")
def get_summary(job_id: str):
    """Returns the judge model's machine-written summary of the job, or 404 saying why not."""
    find_job(job_id, load_answers=False)
    return jsonify(summary=summary.summary_doc(job_id))


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancels a job: queued work stops at once, in-flight calls end when they return."""
    require_admin()
    return jsonify(job=job_document(jobs.cancel(job_id)))


@bp.post("/jobs/<job_id>/retry")
def retry_job(job_id: str):
    """Queues a finished job's failed answers again, with a new deadline."""
    require_admin()
    job, requeued = jobs.retry(job_id, settings.current().config)
    return jsonify(job=job_document(job), requeued=requeued)


def require_admin() -> None:
    """Refuses the request unless it carries `Authorization: Bearer <BEACON_ADMIN_TOKEN>`;
    every attempt counts in the admin-token throttle the login form shares (429 over it)."""
    if settings.current().admin_token is None:
        raise ApiError(
            403,
            "admin_disabled",
            "admin actions (cancel, retry, running a schedule) are off: BEACON_ADMIN_TOKEN is "
            "not set",
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    bearer = given.strip() if scheme.lower() == "bearer" else ""
    # No token, no guess: only a request presenting one counts against the throttle.
    if not bearer or not admin.check_token(bearer, request.remote_addr):
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <BEACON_ADMIN_TOKEN>")


@bp.get("/executions")
def list_executions():
    """Lists executions, filtered by job, model, region and status, with a cursor."""
    query = select(Execution).order_by(Execution.id)
    for name in ("job_id", "model_id", "region", "status"):
        value = request.args.get(name)
        if value:
            if name == "status":
                _check_choice("status", value, EXECUTION_STATUSES)
            if name == "region":
                value = params.region_id(value, settings.current().config)
            query = query.where(getattr(Execution, name) == value)
    limit, cursor = paging.page_args(request.args, column=Execution.id)
    if cursor is not None:
        query = query.where(Execution.id > cursor)
    rows = db.session.scalars(query.limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    return jsonify(items=[e.to_dict() for e in page], next=str(page[-1].id) if more else None)


@bp.get("/executions/job/<job_id>")
def list_job_executions(job_id: str):
    """Lists every execution of one job, with answers, in the spec's order."""
    job = find_job(job_id, load_answers=False)
    # A big job's executions come without answers, as in its job document.
    doc = {"items": job_document(job)["executions"], "next": None}
    return rendering.json_response(lambda: doc)


@bp.get("/executions/<int:execution_id>")
def get_execution(execution_id: int):
    """Returns one execution with its answers."""
    execution = find_execution(execution_id)
    doc = {"execution": execution.to_dict(with_answers=True)}
    return rendering.json_response(lambda: doc)


@bp.get("/models")
def list_models():
    """Lists the configured models."""
    config = settings.current().config
    items = [
        {
            "id": m.id,
            "name": m.name,
            "icon": m.icon,
            "provider_model": m.provider_model,
            "default": m in config.default_models(),
            # USD per million tokens in every region that does not override them; null: unpriced.
            "price_in_per_mtok": m.price_in_per_mtok,
            "price_out_per_mtok": m.price_out_per_mtok,
        }
        for m in config.models.values()
    ]
    return jsonify(items=items, next=None)


@bp.get("/regions")
def list_regions():
    """Lists the configured regions, without their secrets, with their recent health."""
    config = settings.current().config
    health = region_health.region_health(config)
    items = [
        {
            "id": r.id,
            "name": r.name,
            "aliases": list(r.aliases),
            "provider": r.provider,
            "max_concurrency": r.max_concurrency,
            "local": r.provider == "local",
            "health": health[r.id],
        }
        for r in config.regions.values()
    ]
    return jsonify(items=items, next=None)


@bp.get("/questions")
def list_questions():
    """Lists the question bank."""
    config = settings.current().config
    items = [
        {
            "id": q.id,
            "category": q.category,
            "prompt": q.prompt,
            "language": q.language,
            "version": q.version,
            "variants": {
                lang: {"prompt": text, "version": prompt_version(text)}
                for lang, text in q.variants.items()
            },
            "framing_terms": [*q.framing_terms],
        }
        for q in config.questions.values()
    ]
    return jsonify(items=items, next=None)


@bp.get("/openapi.json")
def get_openapi():
    """Returns the OpenAPI 3.1 document of this API."""
    return jsonify(openapi.document(current_app.config["BEACON_VERSION"]))


def _baseline() -> str | None:
    return params.region_id(request.args.get("baseline"), settings.current().config)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be one of {', '.join(choices)}", {name: value}
        )
