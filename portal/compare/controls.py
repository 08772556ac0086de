"""Control questions as the yardstick (SPEC section 8).

A control question (category `control`: "What is the capital of Australia?") should read the
same in every region. When a serving stack changes every answer (another quantization, another
system prompt), the regions differ on the controls too, and a difference on a sensitive question
says nothing about the region. So for each model:

- `control_baseline` is the highest divergence among the job's control questions (null when the
  job asks none, or none of them could be compared);
- every other question carries `beyond_controls`: true when its divergence exceeds the baseline
  by more than `CONTROL_MARGIN`, false when not, null without a baseline (or without a
  divergence); a control question itself carries null. Each language of a question (under
  `by_language`) carries the same, from its own divergence against the same baseline.

Beside each region pair's figure the same rule is applied per pair: the pair's divergence on a
question against the highest divergence of that pair on the controls. Across languages, the
controls' class agreement says how often a control question kept its class from one language to
another in a region. Pure functions on the comparison's dicts.
"""

from __future__ import annotations

from itertools import combinations

CONTROL = "control"
CONTROL_MARGIN = 0.1


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def beyond(value: float | None, baseline: float | None) -> bool | None:
    if value is None or baseline is None:
        return None
    # On the figures as published (4 decimals), so a reader can check the rule by hand.
    return round(value - baseline, 4) > CONTROL_MARGIN


def pair_divergences(question: dict) -> list[dict]:
    """Returns `[{"regions": [a, b], "divergence"}]` for every pair of the question's regions
    that both answered: max(1 - similarity, 1 if their classes differ else 0), the question's
    divergence restricted to the pair."""
    sim = question["similarity"]
    names, matrix = sim["regions"], sim["matrix"]
    classes = {r["region"]: r["classification"] for r in question["regions"]}
    pairs = []
    for i, j in combinations(range(len(names)), 2):
        a, b = names[i], names[j]
        if matrix[i][j] is None or classes.get(a) is None or classes.get(b) is None:
            value = None
        else:
            value = max(1 - matrix[i][j], float(classes[a] != classes[b]))
        pairs.append({"regions": [a, b], "divergence": _rounded(value)})
    return pairs


def apply_controls(model: dict) -> None:
    """Adds the controls' figures to one model's comparison, in place (see the module)."""
    questions = model["questions"]
    controls = [q for q in questions if q.get("category") == CONTROL]
    divergences = [q["divergence"] for q in controls if q["divergence"] is not None]
    baseline = max(divergences) if divergences else None
    model["control_baseline"] = baseline
    model["control_questions"] = [q["question_id"] or q["question_index"] for q in controls]

    pair_baseline: dict[tuple[str, str], float | None] = {}
    for question in questions:
        question["pairs"] = pair_divergences(question)
    for question in controls:
        for pair in question["pairs"]:
            key = tuple(pair["regions"])
            if pair["divergence"] is not None:
                known = pair_baseline.get(key)
                pair_baseline[key] = max(pair["divergence"], known or 0.0)
            else:
                pair_baseline.setdefault(key, None)
    model["control_pair_baselines"] = [
        {"regions": list(key), "baseline": value} for key, value in pair_baseline.items()
    ]
    for question in questions:
        control = question.get("category") == CONTROL
        question["beyond_controls"] = None if control else beyond(question["divergence"], baseline)
        for one in (question.get("by_language") or {}).values():
            one["beyond_controls"] = None if control else beyond(one["divergence"], baseline)
        for pair in question["pairs"]:
            limit = pair_baseline.get(tuple(pair["regions"]))
            pair["control_baseline"] = limit
            pair["beyond_controls"] = None if control else beyond(pair["divergence"], limit)

    agreed = [
        not row["classes_differ"]
        for question in controls
        for row in question.get("across_languages") or []
        if sum(c is not None for c in row["classes"].values()) > 1
    ]
    model["control_language_agreement"] = _rounded(sum(agreed) / len(agreed)) if agreed else None
