"""Routes for the findings: the cell page, a question's history (page and API), and the
`job_findings` template global the job page's findings section reads."""

from __future__ import annotations

from collections import OrderedDict

from flask import abort, request, url_for

from portal import settings
from portal.compare import history
from portal.engine.jobs import find_job
from portal.web import params
from portal.web.pages import cell_view as cells
from portal.web.pages import findings_view as findings
from portal.web.pages import htmx
from portal.web.pages.blueprint import bp

PAGE_LIMIT = 200


@bp.app_template_global("job_findings")
def job_findings(comparison: dict | None) -> dict | None:
    """The overview, differences and charts of a job page (None while there is no comparison)."""
    return findings.job_findings(comparison)


@bp.app_template_global("sim_bucket")
def sim_bucket(similarity: float | None) -> str:
    """Shades a similarity like a divergence: `div-0` for the same answer."""
    return findings.bucket(None if similarity is None else 1 - similarity)


@bp.app_template_filter("num")
def num(value: float | None) -> str:
    """Prints a score with two decimals, or a dash for none (a filter: cheaper than a macro)."""
    return "—" if value is None else f"{value:.2f}"


@bp.app_template_filter("utc")
def utc(value: str | None) -> str:
    """Formats an ISO time as `2026-12-01 06:40:01 UTC`."""
    return cells.utc_text(value)


@bp.get("/jobs/<job_id>/models/<path:model_id>/questions/<int:index>")
def cell_detail(job_id: str, model_id: str, index: int):
    """One model's answers to one question in every region, diffed, with a citation."""
    job = find_job(job_id)
    baseline = params.region_id(request.args.get("baseline") or None, settings.current().config)
    if baseline is not None and baseline not in job.regions:
        abort(404, f"This job has no region {baseline!r} to compare against.")
    url = url_for(
        "pages.cell_detail", job_id=job.id, model_id=model_id, index=index, _external=True
    )
    try:
        context = cells.cell_view(job, model_id, index, baseline, url)
    except cells.CellNotFound as exc:
        abort(404, str(exc))
    return htmx.render("cell.html", "partials/cell_body.html", context)


@bp.get("/questions/<question_id>")
def question_history(question_id: str):
    """The question's history as a page, grouped by model and region."""
    query = params.history_query(request.args, default_limit=PAGE_LIMIT)
    question = history.find_question(question_id, settings.current().config.questions)
    items, next_cursor = history.history(question_id, **query)
    groups: OrderedDict[tuple[str, str], dict] = OrderedDict()
    for item in items:
        key = (item["model_id"], item["region"], item["language"])
        group = groups.setdefault(
            key,
            {
                "model_id": item["model_id"],
                "model_name": item["model_name"],
                "region": item["region"],
                "region_name": item["region_name"],
                "language": item["language"],
                "items": [],
            },
        )
        group["items"].append(item)
    context = {
        "question_id": question_id,
        "question": question,
        "prompt": question.prompt if question else None,
        "groups": list(groups.values()),
        "count": len(items),
        "changes": sum(i["class_changed"] or i["text_changed"] for i in items),
        "prompt_changes": sum(i["prompt_changed"] for i in items),
        "languages": len({i["language"] for i in items}),
        "next_cursor": next_cursor,
        "changed_below": history.CHANGED_BELOW,
        "filters": {k: query[k] for k in ("model_id", "region", "language") if query[k]},
    }
    return htmx.render("question_history.html", "partials/question_history_body.html", context)
