"""Query parameters of the list endpoints and of the pages that filter: a name the endpoint does
not take is refused (a misspelt filter would otherwise widen the answer silently), and region
filters accept the aliases a JobSpec accepts."""

from __future__ import annotations

import difflib

from flask import Flask, request

from portal import settings
from portal.config import BeaconConfig
from portal.errors import ApiError
from portal.models import Answer, Job
from portal.questions import language_tag
from portal.web import paging

# Every endpoint that lists or filters, with the parameters it takes (and nothing else).
ACCEPTED: dict[str, tuple[str, ...]] = {
    "api.list_jobs": ("status", "limit", "cursor"),
    "api.list_executions": ("job_id", "model_id", "region", "status", "limit", "cursor"),
    "api.list_job_executions": (),
    "api.list_models": (),
    "api.list_regions": (),
    "api.list_questions": (),
    "api.get_comparison": ("baseline",),
    "api.get_comparison_csv": ("baseline",),
    "api.list_job_answers": ("limit", "cursor"),
    "pages.list_jobs": ("before",),
    "pages.job_detail": ("differs", "baseline", "model", "page"),
    "pages.list_questions": (),
    "pages.list_regions": (),
    "pages.cell_detail": ("baseline",),
    "pages.question_history": ("model_id", "region", "language", "limit", "cursor"),
    "api.question_history_api": ("model_id", "region", "language", "limit", "cursor"),
    "api.get_checkpoint": ("cosigned",),
    "api.get_inclusion_proof": ("index", "size"),
    "api.get_consistency_proof": ("old", "new"),
    "api.list_entries": ("start", "limit", "cursor"),
    "api.list_schedules": (),
    "api.list_changes": ("question_id", "model_id", "region", "language", "kind", "job_id")
    + ("limit", "cursor"),
    "pages.list_schedules": (),
    "pages.changes_feed": ("question_id",),
    "pages.list_webhooks": (),
}


def register(app: Flask) -> None:
    """Checks the query of every request to an endpoint named in ACCEPTED."""
    app.before_request(check_query)


def check_query() -> None:
    """Refuses a query parameter the endpoint does not take with 400 invalid_parameter."""
    accepted = ACCEPTED.get(request.endpoint or "")
    if accepted is None:
        return
    for name in request.args:
        if name not in accepted:
            raise unknown_parameter(name, accepted)


def unknown_parameter(name: str, accepted: tuple[str, ...]) -> ApiError:
    """Returns the refusal of `name`, suggesting the parameter it most resembles."""
    takes = ", ".join(accepted) if accepted else "no query parameters"
    message = f"unknown query parameter {name!r}; this endpoint takes {takes}"
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    # The value is not echoed: a secret pasted into a URL must not come back in a page or a log.
    return ApiError(400, "invalid_parameter", message, {name: "unknown parameter"})


def region_id(value: str | None, config: BeaconConfig) -> str | None:
    """Returns the region id that `value` names (an id or an alias, any case), else `value`.

    A name the configuration does not know is kept as given: jobs stored under an earlier
    configuration may still carry it.
    """
    if not value:
        return value
    region = config.find_region(value)
    return region.id if region is not None else value


def history_query(args, *, default_limit: int = paging.DEFAULT_LIMIT) -> dict:
    """A question history's filters and page, as `compare.history.history` takes them."""
    # `<job pk>-<answer id>` (portal/compare/history.py), each bounded by its column.
    limit, cursor = paging.page_args(
        args,
        default=default_limit,
        cursor=lambda raw: paging.pair_cursor(raw, Job.pk, Answer.id),
    )
    return {
        "model_id": args.get("model_id") or None,
        "region": region_id(args.get("region") or None, settings.current().config),
        "language": language_filter(args.get("language") or None),
        "limit": limit,
        "cursor": cursor,
    }


def language_filter(value: str | None) -> str | None:
    """A `language=` filter as a BCP 47 tag in its usual case; 400 unless it is one."""
    if value is None:
        return None
    tag = language_tag(value)
    if tag is None:
        raise ApiError(
            400,
            "invalid_parameter",
            "language must be a BCP 47 language tag (e.g. en, zh, pt-BR)",
            {"language": value[:100]},
        )
    return tag
