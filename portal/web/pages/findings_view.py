"""Findings first (SPEC section 7): the overview matrix, the ranked differences and the charts
that open a job page, built from the job's comparison (`portal.compare`).

Plain functions on the comparison dict; the page templates add the links.
"""

from __future__ import annotations

import re
from collections import Counter

from portal.compare.framing import CJK
from portal.web.pages import charts

BUCKETS = 5
# The differences list shows this many cells; the overview still shows every cell.
DIFFERENCES_SHOWN = 30
QUOTE_WORDS = 24
_CJK_CHAR = re.compile(f"[{CJK}]")
_TOKEN = re.compile(rf"[{CJK}]|[^\W{CJK}]+")
_ANSWERED = ("substantive", "refusal", "evasive")
# When as many regions hold one class as another, the class worth flagging is the odd one out.
_MAJORITY_PREFERENCE = {"substantive": 0, "evasive": 1, "refusal": 2}
CONTROL_WORDS = {True: "beyond the controls", False: "no more than the controls"}


def bucket(divergence: float | None) -> str:
    """Returns the shading class of a divergence: `div-0` (alike) to `div-5`, `div-none`."""
    if divergence is None:
        return "div-none"
    return f"div-{min(BUCKETS, max(0, round(divergence * BUCKETS)))}"


def word_count(text: str | None) -> int:
    """Counts words: pieces between white space; in CJK text each character is a word and
    punctuation is not."""
    text = text or ""
    if _CJK_CHAR.search(text) is None:
        # Spaced scripts, the common case: pieces between white space (a lone dash counts).
        return len(text.split())
    return len(_TOKEN.findall(text))


def regions_apart(question: dict) -> list[str]:
    """Returns the regions that stand apart in one (model, question) comparison.

    When classes disagree: the regions outside the most common class (a tie keeps the
    substantive answer as the common one, so a lone refusal is the odd one out). Otherwise the
    region least similar to the others, when the question differs at all.
    """
    classes = {r["region"]: r["classification"] for r in question["regions"] if r["classification"]}
    if len(set(classes.values())) > 1:
        counts = Counter(classes.values())
        common = min(counts, key=lambda c: (-counts[c], _MAJORITY_PREFERENCE.get(c, 3)))
        return [r for r, c in classes.items() if c != common]
    if not question.get("differs"):
        return []
    sim = question["similarity"]
    names, matrix = sim["regions"], sim["matrix"]
    live = [i for i in range(len(names)) if matrix[i][i] is not None]
    if len(live) < 2:
        return []

    def closeness(i: int) -> float:
        return sum(matrix[i][j] or 0.0 for j in live if j != i) / (len(live) - 1)

    return [names[min(live, key=lambda i: (closeness(i), -i))]]


def _quote(spans: list[dict], op: str) -> str:
    words = " … ".join(" ".join(s["text"].split()) for s in spans if s["op"] == op).split(" ")
    words = [w for w in words if w]
    text = " ".join(words[:QUOTE_WORDS])
    return text + (" …" if len(words) > QUOTE_WORDS else "")


def _excerpt(entry: dict | None) -> str:
    if entry is None:
        return ""
    text = entry.get("output") or entry.get("error") or ""
    words = text.split()
    return " ".join(words[:QUOTE_WORDS]) + (" …" if len(words) > QUOTE_WORDS else "")


def differing_words(question: dict, apart: list[str], baseline: str) -> dict:
    """Returns the words that differ, quoted from the word diff: the baseline's and a region's."""
    by_region: dict[str, dict] = {}
    for entry in question["answers"]:
        by_region.setdefault(entry["region"], entry)
    others = [r for r in by_region if r != baseline]
    region = next((r for r in apart if r != baseline), None)
    if region is None:
        region = next((r for r in others if r not in apart), others[0] if others else None)
    entry = by_region.get(region) if region else None
    base = by_region.get(baseline)
    if entry and entry.get("diff"):
        said, base_said = _quote(entry["diff"], "added"), _quote(entry["diff"], "removed")
    else:
        said, base_said = _excerpt(entry), _excerpt(base)
    return {"baseline": baseline, "baseline_words": base_said, "region": region, "words": said}


def controls_label(beyond: bool | None) -> str | None:
    """Says how a difference compares with the controls (SPEC section 8), or None without any."""
    return CONTROL_WORDS.get(beyond) if beyond is not None else None


def languages_apart(question: dict) -> list[str]:
    """The regions whose answers changed class from one language to another."""
    return [
        row["region"] for row in question.get("across_languages") or [] if row["classes_differ"]
    ]


def in_language(question: dict, language: str) -> dict:
    """One language's comparison of a question, with that language's answers."""
    one = (question.get("by_language") or {}).get(language)
    if one is None or language == question.get("language"):
        return question
    answers = [a for a in question["answers"] if a.get("language") == language]
    return {**question, **one, "language": language, "answers": answers}


def _differing_language(question: dict) -> str | None:
    """The language whose regions differ most (the question's own on a tie), or None."""
    by_language = question.get("by_language") or {}
    found = [
        (-(one["divergence"] or 0.0), lang != question.get("language"), lang)
        for lang, one in by_language.items()
        if one["differs"]
    ]
    if not by_language:
        return question.get("language") if question["differs"] else None
    return min(found)[2] if found else None


def overview(comparison: dict) -> dict:
    """Returns the matrix: question columns and one row per model of cells."""
    models = comparison["models"]
    columns = [
        {"index": q["question_index"], "id": q["question_id"], "prompt": q["prompt"]}
        for q in (models[0]["questions"] if models else [])
    ]
    rows = []
    for model in models:
        cells = []
        for q in model["questions"]:
            refused = list(q["refusal_regions"])
            failed = [r["region"] for r in q["regions"] if r["failed"] and not r["answered"]]
            across = languages_apart(q)
            others = [
                lang
                for lang, one in (q.get("by_language") or {}).items()
                if lang != q.get("language") and one["differs"]
            ]
            cells.append(
                {
                    "question_index": q["question_index"],
                    "question_id": q["question_id"],
                    "divergence": q["divergence"],
                    "bucket": bucket(q["divergence"]),
                    "differs": q["differs"],
                    "refused": refused,
                    "failed": failed,
                    "apart": regions_apart(q) if q["differs"] else [],
                    "controls": controls_label(q.get("beyond_controls")) if q["differs"] else None,
                    # Regions whose class changed with the language, and other languages whose
                    # regions differ: the cell's figure is its first language's.
                    "languages_apart": across,
                    "differs_in": others,
                    "marked": bool(refused or failed or across),
                }
            )
        rows.append(
            {k: model[k] for k in ("model_id", "model_name", "model_icon")} | {"cells": cells}
        )
    return {"columns": columns, "rows": rows}


def differences(comparison: dict, quoted: int | None = None) -> list[dict]:
    """Returns the cells whose regions differ, most divergent first (ties in page order).

    Only the first `quoted` cells (all when None) get their differing words quoted.
    """
    found = []
    baseline = comparison["baseline"]
    for m, model in enumerate(comparison["models"]):
        for whole in model["questions"]:
            language = _differing_language(whole)
            if language is None:
                continue
            q = in_language(whole, language)
            apart = regions_apart(q)
            answering = [r["region"] for r in q["regions"] if r["answered"]]
            found.append(
                {
                    "order": (-(q["divergence"] or 0.0), m, q["question_index"]),
                    "model_id": model["model_id"],
                    "model_name": model["model_name"],
                    "model_icon": model["model_icon"],
                    "question_index": q["question_index"],
                    "question_id": q["question_id"],
                    "prompt": q["prompt"],
                    "divergence": q["divergence"],
                    # Named when the question is asked in several languages.
                    "language": language if len(whole.get("by_language") or {}) > 1 else None,
                    "apart": apart,
                    "others": [r for r in answering if r not in apart],
                    "refused": q["refusal_regions"],
                    "controls": controls_label(q.get("beyond_controls")),
                    "beyond_pairs": [
                        p["regions"] for p in whole.get("pairs") or [] if p["beyond_controls"]
                    ]
                    if language == whole.get("language")
                    else [],
                    "languages_apart": languages_apart(whole),
                    "question": q,
                }
            )
    found.sort(key=lambda d: d["order"])
    for rank, item in enumerate(found):
        question = item.pop("question")
        if quoted is None or rank < quoted:
            item["quote"] = differing_words(question, item["apart"], baseline)
    return found


def chart_figures(comparison: dict) -> list:
    """Returns the charts: refusals by region and model, mean answer length by region."""
    regions = [r["id"] for r in comparison["regions"]]
    models = comparison["models"]
    refusals = {(m["model_id"], r): 0 for m in models for r in regions}
    lengths: dict[tuple[str, str], list[int]] = {key: [] for key in refusals}
    for model in models:
        for q in model["questions"]:
            for entry in q["answers"]:
                key = (model["model_id"], entry["region"])
                if key not in refusals:
                    continue
                refusals[key] += entry["classification"] == "refusal"
                if entry["classification"] in _ANSWERED:
                    lengths[key].append(word_count(entry["output"]))
    names = {r["id"]: r["name"] for r in comparison["regions"]}

    def groups(value):
        return [
            (names.get(r, r), [(m["model_name"], value((m["model_id"], r))) for m in models])
            for r in regions
        ]

    return [
        charts.bar_chart(
            "chart-refusals",
            "Refusals by region and model",
            groups(lambda key: refusals[key]),
            unit="refused",
            caption="(answers classified as refusals)",
        ),
        charts.bar_chart(
            "chart-length",
            "Answer length by region and model",
            groups(lambda key: sum(lengths[key]) / len(lengths[key]) if lengths[key] else 0),
            unit="words",
            caption="(mean words per answer; refusals and evasions included, failures not)",
        ),
    ]


def job_findings(comparison: dict | None) -> dict | None:
    """Returns everything the findings section shows, or None while there is no comparison."""
    if not comparison or not comparison["models"]:
        return None
    ranked = differences(comparison, quoted=DIFFERENCES_SHOWN)
    models = comparison["models"]
    return {
        # Per model: its controls' highest divergence (the yardstick), or a note there is none.
        "controls": [
            {
                "model_name": m["model_name"],
                "baseline": m.get("control_baseline"),
                "questions": m.get("control_questions") or [],
                "language_agreement": m.get("control_language_agreement"),
            }
            for m in models
        ],
        "no_controls": not any(m.get("control_questions") for m in models),
        "overview": overview(comparison),
        "differences": ranked[:DIFFERENCES_SHOWN],
        "more_differences": max(0, len(ranked) - DIFFERENCES_SHOWN),
        "charts": chart_figures(comparison),
        "baseline": comparison["baseline"],
        "measure": comparison["measure"],
    }
