"""The cell page's facts: one model's answers to one question in every region of a job, their
comparison against a chosen region, the framing terms and a citation (SPEC section 7).
"""

from __future__ import annotations

from datetime import datetime

from portal import compare, settings
from portal.compare import framing
from portal.compare import report as reports
from portal.models import Job
from portal.provenance.receipts import citation as receipt_citation
from portal.questions import asked_languages
from portal.times import iso, utcnow


class CellNotFound(LookupError):
    """The job has no such model or no question at that index."""


def utc_text(value: str | None) -> str:
    """Formats an ISO time from the serializers as `2026-12-01 06:40:01 UTC`."""
    if not value:
        return "—"
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _question_comparison(job: Job, doc: dict, model_id: str, index: int, baseline) -> dict | None:
    if not job.ended:
        return None
    if baseline in (None, job.regions[0]):
        whole = reports.job_comparison(job)
    else:
        # Another baseline: compare only this cell, not the whole job. Its divergence does not
        # depend on the baseline; the controls' figures need the job's other questions, so
        # they are read from the job's own comparison.
        executions = [
            {**e, "answers": [a for a in e["answers"] if a["question_index"] == index]}
            for e in doc["executions"]
            if e["model_id"] == model_id
        ]
        reduced = {
            **doc,
            "models": [model_id],
            "questions": reports.with_bank_facts(
                [q for q in doc["questions"] if q["index"] == index]
            ),
            "executions": executions,
        }
        semantic = settings.current().semantic and compare.semantic_available()
        cell = _question(compare.compare_job(reduced, baseline=baseline, semantic=semantic))
        job_cell = _question(reports.job_comparison(job), model_id, index)
        if cell is not None and job_cell is not None:
            cell["beyond_controls"], cell["pairs"] = job_cell["beyond_controls"], job_cell["pairs"]
        return cell
    return _question(whole, model_id, index)


def _question(whole: dict, model_id: str | None = None, index: int | None = None) -> dict | None:
    """The comparison of one model's question (the only one when no model is named)."""
    model = next((m for m in whole["models"] if model_id in (None, m["model_id"])), None)
    if model is None:
        return None
    return next((q for q in model["questions"] if index in (None, q["question_index"])), None)


def cell_view(job: Job, model_id: str, index: int, baseline: str | None, url: str) -> dict:
    """Builds the cell page; raises CellNotFound for a model or index the job does not have."""
    doc = job.to_dict(with_executions=True)
    question = next((q for q in doc["questions"] if q["index"] == index), None)
    if model_id not in doc["models"] or question is None:
        raise CellNotFound(f"Job {job.id} has no model {model_id!r} with a question {index}.")
    summary = _question_comparison(job, doc, model_id, index, baseline)
    baseline = baseline or (doc["regions"][0] if doc["regions"] else None)
    entries = {e["answer_id"]: e for e in (summary or {}).get("answers", [])}
    terms = [f["term"] for f in (summary or {}).get("framing") or []]
    if not terms:
        terms = reports.framing_terms([question])[str(index)]
    mine = [e for e in doc["executions"] if e["model_id"] == model_id]
    asked = {a["language"]: a for a in asked_languages(question)}
    languages = list(asked)
    across = {row["region"]: row for row in (summary or {}).get("across_languages") or []}
    columns = []
    for execution in mine:
        answers = []
        for answer in execution["answers"]:
            if answer["question_index"] != index:
                continue
            entry = entries.get(answer["id"], {})
            answers.append(
                {
                    **answer,
                    "classification": entry.get("classification") or answer["classification"],
                    "classification_rule": entry.get("classification_rule"),
                    "similarity_to_baseline": entry.get("similarity_to_baseline"),
                    "diff": entry.get("diff"),
                    "diff_text": entry.get("diff_text") or "",
                    "pieces": framing.highlight(answer["output"], terms),
                    "judgement": answer.get("judgement"),
                }
            )
        for answer in answers:
            if answer["language"] not in languages:
                languages.append(answer["language"])
        columns.append({"execution": execution, "answers": answers})
    for column in columns:
        # Per region, its answers language by language: the prompt as asked beside each.
        column["languages"] = [
            {
                "language": lang,
                "prompt": asked.get(lang, {}).get("prompt"),
                "version": asked.get(lang, {}).get("version"),
                "answers": [a for a in column["answers"] if a["language"] == lang],
            }
            for lang in languages
        ]
        column["across"] = across.get(column["execution"]["region"])
    receipts = receipt_citation([e["id"] for e in mine]) if mine else {}
    first = mine[0] if mine else {"model_name": model_id, "model_icon": ""}
    view = {
        "job": doc,
        "model": {"id": model_id, "name": first["model_name"], "icon": first["model_icon"]},
        "question": question,
        "terms": terms,
        "columns": columns,
        "languages": languages,
        "by_language": (summary or {}).get("by_language") or {},
        "summary": summary,
        "baseline": baseline,
        "receipts": receipts,
    }
    view["citation"] = citation(view, url)
    return view


def citation(view: dict, url: str) -> dict:
    """Returns the citation block's facts and its copy-as-quotation text."""
    job, model, question = view["job"], view["model"], view["question"]
    accessed = iso(utcnow(), "seconds")
    lines = [
        f"“{question['prompt']}”",
        f"Answers of {model['name']} ({model['id']}) by region, Beacon job {job['id']}, "
        f"question {question.get('id') or index_label(question)}:",
    ]
    for column in view["columns"]:
        execution = column["execution"]
        receipt = view["receipts"].get(execution["id"])
        for answer in column["answers"]:
            runs = sum(a["language"] == answer["language"] for a in column["answers"])
            run = f", run {answer['run']}" if runs > 1 else ""
            if len(view["languages"]) > 1:
                run += f", in {answer['language']}"
            line = (
                f"- {execution['region_name']} ({execution['region']}{run}): "
                f"{(answer['classification'] or answer['status']).replace('_', ' ')}; "
                f"answer {answer['id']}, finished {utc_text(answer['finished_at'])}"
            )
            if answer["output_sha256"]:
                line += f", output SHA-256 {answer['output_sha256']}"
            if receipt:
                line += f"; receipt {receipt.get('receipt_id')}, log index {receipt['log_index']}"
            lines.append(line)
    lines.append(
        f"JobSpec SHA-256 (spec_hash) {job['spec_hash']}; submitted "
        f"{utc_text(job['submitted_at'])}, finished {utc_text(job['finished_at'])}."
    )
    lines.append(f"Retrieved {utc_text(accessed)} from {url}")
    return {"url": url, "accessed_at": accessed, "text": "\n".join(lines)}


def index_label(question: dict) -> str:
    """Names a question without a bank id by its position."""
    return f"#{question['index'] + 1}"
