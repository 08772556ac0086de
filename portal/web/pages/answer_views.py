"""View models for answers: whether a job page question collapses to one line because its
regions agree, and the execution page (its answers and the same model's other regions)."""

from __future__ import annotations

from sqlalchemy import select

from portal.db import db
from portal.models import Execution

THIS_MACHINE = "this machine"


def agreement(summary: dict | None, cells: list[dict]) -> dict | None:
    """Returns the one-line verdict of a question whose regions agree, else None.

    A question collapses only once it is compared, every region answered it and the
    comparison says the regions do not differ; the line gives the lowest similarity between
    two regions, so "1.00" means word for word the same everywhere.
    """
    if summary is None or summary["differs"]:
        return None
    regions = summary["similarity"]["regions"]
    matrix = summary["similarity"]["matrix"]
    if not regions or any(r["answered"] == 0 for r in summary["regions"]):
        return None
    between = [
        value
        for i, row in enumerate(matrix)
        for j, value in enumerate(row)
        if i < j and value is not None
    ]
    return {
        "regions": len(regions),
        "similarity": min(between) if between else None,
        "classification": summary["regions"][0]["classification"],
        "answers": sum(len(cell["answers"]) for cell in cells),
    }


def local_suffix(name: str, provider: str) -> str:
    """Returns " (this machine)" for a local region whose name does not already say so."""
    return f" ({THIS_MACHINE})" if provider == "local" and THIS_MACHINE not in name else ""


def execution_context(execution: Execution) -> dict:
    """Builds the execution page: the execution, one model name, and its sibling regions."""
    doc = execution.to_dict(with_answers=True)
    reported = {a["provider_model"] for a in doc["answers"] if a["provider_model"]}
    # The provider's own name for the model when every answer reports the same one (the local
    # provider names its GGUF file); otherwise the name the configuration sends.
    served_as = reported.pop() if len(reported) == 1 else doc["provider_model"]
    regions = db.session.execute(
        select(Execution.id, Execution.region, Execution.region_name, Execution.status)
        .where(Execution.job_id == execution.job_id, Execution.model_id == execution.model_id)
        .order_by(Execution.position)
    ).all()
    return {
        "execution": doc,
        "served_as": served_as,
        "local_suffix": local_suffix(doc["region_name"], doc["provider"]),
        "regions": [
            {
                "id": row.id,
                "region": row.region,
                # The page says once that the region is this machine; the list needs no repeat.
                "region_name": row.region_name.replace(f" ({THIS_MACHINE})", ""),
                "status": row.status,
                "current": row.id == execution.id,
            }
            for row in regions
        ],
    }
