"""The job page's view model: header facts, progress and one group per model, from the
serializers' dicts and the comparison, so the page, its htmx fragment and the JSON API show the
same facts.

A big job's page folds its model groups: past `FOLD_OVER` answers the page holds the findings
(overview, differences, charts) and, per model, its summary and a link to that model's answers
(`?model=<id>`), instead of every answer of every model at once. Without JavaScript the link is
a plain page; the findings already name the cells worth reading.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from portal.compare import report
from portal.db import db
from portal.judge import summary
from portal.judge.models import Judgement
from portal.models import ACTIVE, Answer, Execution, Job, answer_counts
from portal.status import FINISHED, is_classified
from portal.web.pages import answer_views

# Answers a job page shows at once; a bigger job's page shows one model at a time.
FOLD_OVER = 300


def progress(counts: dict) -> dict:
    """Returns answers done (completed, failed or cancelled) of the total, and a percentage."""
    total = counts.get("total", 0)
    done = sum(counts.get(s, 0) for s in FINISHED)
    return {"done": done, "total": total, "percent": round(100 * done / total) if total else 0}


def job_row_view(doc: dict) -> dict:
    """Returns a job dict with its progress and whether it is still active."""
    return {**doc, "progress": progress(doc["counts"]), "active": doc["status"] in ACTIVE}


def job_detail_view(
    job: Job, differs_only: bool, baseline: str | None, model: str | None = None, page: int = 1
) -> dict:
    """Builds the job page: header facts, progress and one group per model in spec order.

    Classes and "differs" come only from the comparison, for a running job as for an ended one
    (a running job's is computed on each view and never cached); its figures are shown once the
    job has ended. `model` keeps that model's group only; without it, a job of more than
    `FOLD_OVER` answers folds every group to its summary and a link to its answers, and shows a
    model's answers `page` by page, at most `FOLD_OVER` answers (whole questions) a page.

    Only the answers the page shows are read (issue 26): a folded page reads counts and the
    judged answers in SQL, a model's page that model's answers; `job` comes without them.
    """
    counts = answer_counts([job.pk])[job.pk]
    folded = model is None and counts["total"] > FOLD_OVER
    # A folded page of a running job shows no comparison: it would compare every answer. It
    # comes first: comparing an ended job stores its classes, which the answers then show.
    comparison = report.job_comparison(job, baseline) if job.ended or not folded else None
    doc = job.to_dict(counts=counts)
    pages = _question_pages(doc["questions"], counts["total"], len(job.models), model, page)
    doc["questions"] = pages["questions"]
    shown = set() if folded else {model} if model is not None else set(job.models)
    doc["executions"] = executions = _executions(job, shown, pages["indexes"])
    baseline = comparison["baseline"] if comparison else baseline or _first(job.regions)
    compared = {m["model_id"]: m for m in comparison["models"]} if comparison else {}
    sizes = _answers_per_execution(job.id) if folded else None
    groups = [
        _model_group(
            doc, model_id, executions, compared.get(model_id), differs_only, job.ended, sizes
        )
        for model_id in doc["models"]
        if model is None or model_id == model
    ]
    return {
        "job": {**job_row_view(doc), "executions": executions},
        "groups": groups,
        "comparison": comparison if job.ended else None,
        "baseline": baseline or _first(doc["regions"]),
        "differs_only": differs_only,
        "only_model": model,
        "folded": folded,
        "all_local": bool(executions) and all(e["provider"] == "local" for e in executions),
        "question_count": pages["count"],
        "question_pages": pages,
        "judging": summary.page_section(job.id, _judged(job.id, executions, shown, pages)),
    }


def _first(values: list) -> str | None:
    return values[0] if values else None


def _question_pages(questions: list, total: int, models: int, model, page: int) -> dict:
    """The questions a page shows: all of them, or on a model's page of more than `FOLD_OVER`
    answers the `page`-th run of whole questions holding at most `FOLD_OVER` answers (one
    question at least), so the page costs the same however big the job is."""
    per_model = total // models if models else 0
    size = len(questions)
    if model is not None and per_model > FOLD_OVER and questions:
        size = max(1, FOLD_OVER * len(questions) // per_model)
    last = max(1, -(-len(questions) // size)) if questions else 1
    page = min(page, last)
    shown = questions[(page - 1) * size : page * size]
    return {
        "questions": shown,
        "indexes": None if len(shown) == len(questions) else [q["index"] for q in shown],
        "count": len(questions),
        "page": page,
        "last": last,
        "first_shown": (page - 1) * size + 1,
        "last_shown": (page - 1) * size + len(shown),
    }


def _executions(job: Job, models: set[str], indexes: list[int] | None = None) -> list[dict]:
    """The job's executions; those of `models` with their answers (one query for them all), to
    the questions of `indexes` only when given."""
    wanted = [e.id for e in job.executions if e.model_id in models]
    answers: dict[int, list[dict]] = {i: [] for i in wanted}
    if wanted:
        query = select(Answer).where(Answer.execution_id.in_(wanted))
        if indexes is not None:
            query = query.where(Answer.question_index.in_(indexes))
        rows = db.session.scalars(
            query.order_by(Answer.execution_id, Answer.question_index, Answer.id).options(
                selectinload(Answer.judgement)
            )
        )
        for answer in rows:
            answers[answer.execution_id].append(answer.to_dict())
    docs = []
    for execution in job.executions:
        doc = execution.to_dict()
        if execution.id in answers:
            doc["answers"] = answers[execution.id]
        docs.append(doc)
    return docs


def _judged(job_id: str, executions: list[dict], shown: set[str], pages: dict) -> list[dict]:
    """The answers the judge's section counts: the page's own when it shows every answer."""
    if pages["indexes"] is None and all(e["model_id"] in shown for e in executions):
        return [a for e in executions for a in e["answers"]]
    return judged_answers(job_id)


def _answers_per_execution(job_id: str) -> dict[int, int]:
    return dict(
        db.session.execute(
            select(Answer.execution_id, func.count())
            .join(Execution, Answer.execution_id == Execution.id)
            .where(Execution.job_id == job_id)
            .group_by(Answer.execution_id)
        ).all()
    )


def judged_answers(job_id: str) -> list[dict]:
    """The job's judged answers as the judge's page section reads them (class and judgement),
    in the job's order, without their texts."""
    rows = db.session.execute(
        select(Answer.classification, Judgement)
        .join(Judgement, Judgement.answer_id == Answer.id)
        .join(Execution, Answer.execution_id == Execution.id)
        .where(Judgement.job_id == job_id)
        .order_by(Execution.position, Answer.question_index, Answer.id)
    ).all()
    return [{"classification": cls, "judgement": judgement.to_dict(cls)} for cls, judgement in rows]


def _model_group(doc, model_id, executions, compared, differs_only, ended, sizes) -> dict:
    """One model's group; `sizes` (answers per execution) when the page is folded."""
    folded = sizes is not None
    mine = [e for e in executions if e["model_id"] == model_id]
    by_region = {e["region"]: e for e in mine}
    first = mine[0] if mine else {"model_name": model_id, "model_icon": ""}
    answers_by_id = {}
    per_question = {}
    # A folded group shows no question: building them is most of a big page's cost.
    if compared and not folded:
        for question in compared["questions"]:
            per_question[question["question_index"]] = question
            for entry in question["answers"]:
                answers_by_id[entry["answer_id"]] = entry
    # Each execution's answers by question, read once (not once per question).
    asked: dict[tuple[str, int], list[dict]] = {}
    for execution in [] if folded else mine:
        for answer in execution["answers"]:
            asked.setdefault((execution["region"], answer["question_index"]), []).append(answer)
    questions = []
    for question in [] if folded else doc["questions"]:
        summary = per_question.get(question["index"])
        cells = []
        for region in doc["regions"]:
            execution = by_region.get(region)
            if execution is None:
                continue
            answers = [
                answer_view(a, answers_by_id.get(a["id"]))
                for a in asked.get((region, question["index"]), [])
            ]
            cells.append({"execution": execution, "answers": answers})
        differs = differs_anywhere(summary)
        if differs_only and not differs:
            continue
        shown = summary if ended else None
        agree = None if differs else answer_views.agreement(shown, cells)
        several = len(question.get("languages") or []) > 1
        view = {
            "cells": cells,
            "summary": shown,
            "differs": differs,
            "agreement": agree,
            "several": several,
        }
        questions.append({**question, **view})
    if folded:
        count = sum(sizes.get(e["id"], 0) for e in mine)
    else:
        count = sum(len(e["answers"]) for e in mine)
    return {
        "model_id": model_id,
        "model_name": first["model_name"],
        "model_icon": first["model_icon"],
        "executions": [by_region[r] for r in doc["regions"] if r in by_region],
        "compared": compared if ended else None,
        "questions": questions,
        "answers": count,
    }


def differs_anywhere(summary: dict | None) -> bool:
    """True when the regions differ in any language the question was asked in, or a region's
    class changes with the language (a question asked in one language: its `differs`)."""
    if not summary:
        return False
    return (
        summary["differs"]
        or any(one["differs"] for one in (summary.get("by_language") or {}).values())
        or any(row["classes_differ"] for row in summary.get("across_languages") or [])
    )


def answer_view(answer: dict, entry: dict | None) -> dict:
    """An answer as the page shows it: its class, similarity and diff from the comparison only."""
    entry = entry or {}
    return {
        **answer,
        "classification": entry.get("classification"),
        "classified": is_classified(answer["status"]),
        "similarity_to_baseline": entry.get("similarity_to_baseline"),
        "diff": entry.get("diff"),
        "diff_text": entry.get("diff_text") or "",
    }
