"""The comparison as CSV (docs/comparison.md, "CSV"): one row per answer, in the JSON's order.

Model output is untrusted: a cell that a spreadsheet would run as a formula is prefixed with `'`.
"""

from __future__ import annotations

import csv
import io

from portal.compare.framing import csv_counts
from portal.questions import DEFAULT_LANGUAGE

CSV_COLUMNS = [
    "model_id",
    "model_name",
    "question_index",
    "question_id",
    "region",
    "run",
    "status",
    "classification",
    "classification_rule",
    "judge_label",
    "judge_agrees",
    "measure",
    "baseline",
    "similarity_to_baseline",
    "divergence",
    "differs",
    "latency_ms",
    "output",
    "error",
    "diff_text",
    "framing",
    "language",
    "question_version",
    "beyond_controls",
    "cost_usd",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text_cell(value: str | None) -> str:
    # Provider text is untrusted: a leading = + - @ would run as a spreadsheet formula.
    text = value or ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def comparison_csv(comparison: dict) -> str:
    """Returns the comparison as CSV text: a header of CSV_COLUMNS and one row per answer."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for model in comparison["models"]:
        for question in model["questions"]:
            for answer in question["answers"]:
                language = answer.get("language") or DEFAULT_LANGUAGE
                # Divergence and "differs" of the answer's own language (by_language).
                within = (question.get("by_language") or {}).get(language, question)
                row = {
                    "model_id": model["model_id"],
                    "model_name": model["model_name"],
                    "question_index": question["question_index"],
                    "question_id": question["question_id"],
                    "region": answer["region"],
                    "run": answer["run"],
                    "status": answer["status"],
                    "classification": answer["classification"],
                    "classification_rule": answer["classification_rule"],
                    "judge_label": (answer.get("judgement") or {}).get("label"),
                    "judge_agrees": (answer.get("judgement") or {}).get("agrees"),
                    "measure": comparison["measure"],
                    "baseline": comparison["baseline"],
                    "similarity_to_baseline": answer["similarity_to_baseline"],
                    "divergence": within["divergence"],
                    "differs": within["differs"],
                    "latency_ms": answer["latency_ms"],
                    # A comparison cached before costs existed has none: an empty cell.
                    "cost_usd": answer.get("cost_usd"),
                    "language": language,
                    "question_version": answer.get("question_version"),
                    "beyond_controls": question.get("beyond_controls"),
                }
                row = {key: _cell(value) for key, value in row.items()}
                row["output"] = _text_cell(answer["output"])
                row["error"] = _text_cell(answer["error"])
                row["diff_text"] = _text_cell(answer["diff_text"])
                row["framing"] = _text_cell(csv_counts(question.get("framing"), answer))
                writer.writerow(row)
    return buffer.getvalue()
