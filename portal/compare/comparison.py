"""Cross-region comparison (SPEC section 8): how one model's answers differ between regions.

Pure functions on plain data: `compare_job` takes the job dict the API serializes and returns
the comparison described in `docs/comparison.md`; `comparison_csv` flattens it to one row per
answer. Answers are classified by `portal.compare.classifier`; the similarity measures live in
`portal.compare.similarity`, the comparison across languages in `portal.compare.languages` and
the controls' yardstick in `portal.compare.controls`. Nothing here touches Flask or the
database.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from itertools import combinations

from portal.compare.classifier import classify_detail
from portal.compare.controls import apply_controls
from portal.compare.framing import question_framing
from portal.compare.languages import across_languages
from portal.compare.rules import EVASIVE, REFUSAL, SUBSTANTIVE, TECHNICAL_FAILURE, rules_version
from portal.compare.similarity import (
    CJK,
    Similarity,
    embedding_model_id,
    embeds,
    semantic_available,
)
from portal.questions import asked_languages
from portal.status import is_classified

# Between-region spread must exceed within-region spread (0 with a single run) by more than
# this before a question is said to differ between regions.
DIFFERS_THRESHOLD = 0.15
# The question fields computed within one language (under `by_language`, without the answers).
LANGUAGE_FIELDS = (
    "prompt",
    "version",
    "divergence",
    "differs",
    "class_disagreement",
    "within_region_spread",
    "between_region_spread",
    "refusal_regions",
    "regions",
    "similarity",
    "framing",
)

_CJK_CHAR = re.compile(f"[{CJK}]")
# A whitespace run is only ever entered at its start ((?<!\s)): starting inside a long run and
# scanning to its end from every position was quadratic (docs/security.md).
_DIFF_TOKEN = re.compile(rf"(?:(?<!\s)\s+)?(?:[{CJK}]|[^\s{CJK}]+)\s*")
_ANSWERED = (SUBSTANTIVE, REFUSAL, EVASIVE)
# Ties between classes in one region's repeats resolve towards the class worth flagging.
_CLASS_PRIORITY = {REFUSAL: 0, EVASIVE: 1, SUBSTANTIVE: 2}


class SemanticUnavailable(RuntimeError):
    """Semantic similarity was asked for but the `semantic` extra is not installed."""


def word_diff(base: str, other: str) -> list[dict]:
    """Returns the word-level diff of other against base as merged equal/added/removed spans."""
    bt = [m.group() for m in _DIFF_TOKEN.finditer(base or "")]
    ot = [m.group() for m in _DIFF_TOKEN.finditer(other or "")]
    matcher = difflib.SequenceMatcher(None, [t.strip() for t in bt], [t.strip() for t in ot])
    spans: list[dict] = []

    def emit(op: str, pieces: list[str]) -> None:
        if not pieces:
            return
        if spans and spans[-1]["op"] == op:
            spans[-1]["text"] += "".join(pieces)
        else:
            spans.append({"op": op, "text": "".join(pieces)})

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            emit("equal", bt[i1:i2])
        else:
            emit("removed", bt[i1:i2])
            added = ot[j1:j2]
            shown = [s["text"] for s in spans if s["op"] != "removed"]
            if added and j1 and shown and not shown[-1][-1:].isspace():
                # The base's last word had no space after it, the other text's word did.
                added[0] = ot[j1 - 1][len(ot[j1 - 1].rstrip()) :] + added[0]
            emit("added", added)
    return spans


def unified_diff(spans: list[dict]) -> str:
    """Renders diff spans as one string, [-removed-] and {+added+}; empty when nothing changed."""
    if all(span["op"] == "equal" for span in spans):
        return ""
    out = []
    for span in spans:
        text = span["text"]
        if span["op"] == "equal":
            out.append(text)
            continue
        core = text.strip()
        lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
        mark = f"[-{core}-]" if span["op"] == "removed" else f"{{+{core}+}}"
        if out and not lead and not out[-1][-1:].isspace() and not _CJK_CHAR.match(out[-1][-1:]):
            lead = " "
        out.append(f"{lead}{mark}{trail}")
    return "".join(out).strip()


def _ordered(declared, seen) -> list[str]:
    order = list(dict.fromkeys(declared))
    return order + [x for x in dict.fromkeys(seen) if x not in order]


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _region_class(classes: list[str]) -> str | None:
    if not classes:
        return None
    counts = Counter(classes)
    return min(counts, key=lambda c: (-counts[c], _CLASS_PRIORITY[c]))


def _answer_entry(answer: dict, language: str) -> dict:
    status = answer.get("status")
    output = answer.get("output")
    classification = rule = None
    if is_classified(status):
        classification, rule = classify_detail(
            output, status=status, error=answer.get("error"), prompt=answer.get("prompt") or ""
        )
    return {
        "answer_id": answer.get("id"),
        "language": answer.get("language") or language,
        "question_version": answer.get("question_version"),
        "run": answer.get("run") or 1,
        "status": status,
        "classification": classification,
        "classification_rule": rule,
        "output": output,
        "error": answer.get("error"),
        "latency_ms": answer.get("latency_ms"),
        "cost_usd": answer.get("cost_usd"),
        "judgement": answer.get("judgement"),
    }


def _compare_question(question, entries, regions, region_names, baseline, sim) -> dict:
    by_region: dict[str, list[dict]] = {r: [] for r in regions}
    for entry in entries:
        by_region[entry["region"]].append(entry)
    usable = {r: [e for e in by_region[r] if e["classification"] in _ANSWERED] for r in regions}
    base_runs = {e["run"]: e for e in usable.get(baseline, [])}
    for entry in entries:
        base = base_runs.get(entry["run"]) or next(iter(base_runs.values()), None)
        if entry["classification"] in _ANSWERED and base is not None:
            spans = word_diff(base["output"], entry["output"])
            entry["similarity_to_baseline"] = _rounded(sim(base["output"], entry["output"]))
            entry["diff"], entry["diff_text"] = spans, unified_diff(spans)
        else:
            entry["similarity_to_baseline"] = entry["diff"] = entry["diff_text"] = None

    def mean_sim(r1: str, r2: str) -> float | None:
        if r1 != r2:
            pairs = [(a, b) for a in usable[r1] for b in usable[r2]]
        elif len(usable[r1]) == 1:
            return 1.0
        else:
            pairs = list(combinations(usable[r1], 2))
        return _mean(sim(a["output"], b["output"]) for a, b in pairs)

    matrix = [[mean_sim(r1, r2) for r2 in regions] for r1 in regions]
    index = {r: i for i, r in enumerate(regions)}
    answering = [r for r in regions if usable[r]]
    pairs = list(combinations(answering, 2))
    between = _mean(1 - matrix[index[a]][index[b]] for a, b in pairs)
    within = _mean(1 - matrix[index[r]][index[r]] for r in answering if len(usable[r]) > 1)
    classes = {r: _region_class([e["classification"] for e in usable[r]]) for r in regions}
    disagreement = _mean(float(classes[a] != classes[b]) for a, b in pairs)
    divergence = None if between is None else max(between, disagreement)
    differs = bool(disagreement) or (
        between is not None and between - (within or 0.0) > DIFFERS_THRESHOLD
    )
    return {
        "question_index": question["index"],
        "question_id": question.get("id"),
        "prompt": question.get("prompt"),
        "divergence": _rounded(divergence),
        "differs": differs,
        "class_disagreement": _rounded(disagreement),
        "within_region_spread": _rounded(within),
        "between_region_spread": _rounded(between),
        "refusal_regions": [r for r in regions if classes[r] == REFUSAL],
        "regions": [
            {
                "region": r,
                "region_name": region_names.get(r, r),
                "classification": classes[r],
                "answered": len(usable[r]),
                "failed": sum(e["classification"] == TECHNICAL_FAILURE for e in by_region[r]),
                "unanswered": sum(e["classification"] is None for e in by_region[r]),
            }
            for r in regions
        ],
        "similarity": {
            "measure": sim.measure,
            "regions": list(regions),
            "matrix": [[_rounded(v) for v in row] for row in matrix],
        },
        "framing": question_framing(question.get("framing_terms"), entries, regions),
        "answers": entries,
    }


def _question_languages(questions: dict, grouped: dict) -> dict[int, list[str]]:
    """Each question's languages: as the job asks them, then any other an answer carries."""
    found = {qi: [a["language"] for a in asked_languages(q)] for qi, q in questions.items()}
    for (_, qi), entries in grouped.items():
        for entry in entries:
            if entry["language"] not in found[qi]:
                found[qi].append(entry["language"])
    return found


def _compare_languages(question: dict, entries: list[dict], languages: list[str], where) -> dict:
    """Compares one model's answers to one question: the regions within each language
    (`by_language`), the languages within each region (`across_languages`); the question's own
    fields are those of its first language, its `answers` those of every language."""
    regions, region_names, baseline, sim = where
    asked = {a["language"]: a for a in asked_languages(question)}
    per_language = {}
    for lang in languages:
        local = {**question, "prompt": asked.get(lang, {}).get("prompt", question.get("prompt"))}
        mine = [e for e in entries if e["language"] == lang]
        one = _compare_question(local, mine, regions, region_names, baseline, sim.within(lang))
        one["version"] = asked.get(lang, {}).get("version")
        per_language[lang] = one
    result = {
        **per_language[languages[0]],
        "prompt": question.get("prompt"),
        "language": languages[0],
        "category": question.get("category") or "general",
        "answers": entries,
    }
    result["by_language"] = {
        lang: {key: one[key] for key in LANGUAGE_FIELDS} for lang, one in per_language.items()
    }
    classes = {
        lang: {r["region"]: r["classification"] for r in one["regions"]}
        for lang, one in per_language.items()
    }
    result["across_languages"] = across_languages(languages, classes, entries, regions, sim)
    return result


def compare_job(job: dict, *, baseline: str | None = None, semantic: bool | None = None) -> dict:
    """Compares every model's answers across the job's regions; see docs/comparison.md."""
    executions = job.get("executions") or []
    regions = _ordered(job.get("regions") or [], (e["region"] for e in executions))
    models = _ordered(job.get("models") or [], (e["model_id"] for e in executions))
    if baseline is None:
        baseline = regions[0] if regions else None
    elif baseline not in regions:
        raise ValueError(f"unknown baseline region {baseline!r}; the job's regions are {regions}")
    if semantic and not semantic_available():
        raise SemanticUnavailable("semantic similarity needs the 'semantic' extra installed")
    measure = "semantic" if (semantic_available() if semantic is None else semantic) else "lexical"

    region_names = {e["region"]: e.get("region_name") or e["region"] for e in executions}
    questions = {q["index"]: dict(q) for q in job.get("questions") or []}
    grouped: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for execution in executions:
        for answer in execution.get("answers") or []:
            qi = answer["question_index"]
            question = questions.setdefault(
                qi, {"index": qi, "id": answer.get("question_id"), "prompt": answer.get("prompt")}
            )
            own = asked_languages(question)[0]["language"]
            entry = {"region": execution["region"], **_answer_entry(answer, own)}
            grouped[(execution["model_id"], qi)].append(entry)
    languages = _question_languages(questions, grouped)
    for (_, qi), entries in grouped.items():
        order = languages[qi]
        entries.sort(
            key=lambda e: (regions.index(e["region"]), order.index(e["language"]), e["run"])
        )
    texts = [
        e["output"]
        for entries in grouped.values()
        for e in entries
        if e["classification"] in _ANSWERED and embeds(e["language"])
    ]
    sim = Similarity(measure, texts)

    compared = []
    for model_id in models:
        first = next((e for e in executions if e["model_id"] == model_id), {})
        per_question = [
            _compare_languages(
                questions[qi],
                grouped.get((model_id, qi), []),
                languages[qi],
                (regions, region_names, baseline, sim),
            )
            for qi in sorted(questions)
        ]
        refused = {
            r
            for q in per_question
            for one in q["by_language"].values()
            for r in one["refusal_regions"]
        }
        model = {
            "model_id": model_id,
            "model_name": first.get("model_name") or model_id,
            "model_icon": first.get("model_icon"),
            "divergence": _rounded(
                _mean(q["divergence"] for q in per_question if q["divergence"] is not None)
            ),
            "questions_differing": sum(q["differs"] for q in per_question),
            "refusal_regions": [r for r in regions if r in refused],
            "questions": per_question,
        }
        apply_controls(model)
        compared.append(model)
    return {
        "job_id": job.get("id"),
        "baseline": baseline,
        "measure": measure,
        "differs_threshold": DIFFERS_THRESHOLD,
        "rules_version": rules_version(),
        "embedding_model": embedding_model_id() if measure == "semantic" else None,
        "regions": [{"id": r, "name": region_names.get(r, r)} for r in regions],
        "models": compared,
    }
