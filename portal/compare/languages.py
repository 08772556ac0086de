"""Comparison across languages (SPEC section 11): within each region, how a question's answers in
one language differ from its answers in another.

For each region: the class of each language's answers, the judge's label, and the semantic
similarity between the languages' answers when the multilingual embedding model reads both
languages. Token overlap is never used across languages: two texts in different scripts share
no words whatever they say, so a lexical score would read every translation as a difference.
Pure functions on the comparison's entries; nothing here touches Flask or the database.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

from portal.compare.similarity import Similarity, embeds

ANSWERED = ("substantive", "refusal", "evasive")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _label(entries: list[dict]) -> str | None:
    """The judge's label of a region's answers in one language: its first labelled run's."""
    for entry in entries:
        label = (entry.get("judgement") or {}).get("label")
        if label is not None:
            return label
    return None


def _pair(sim: Similarity, ours: list[dict], theirs: list[dict], a: str, b: str):
    """Mean semantic similarity over the pairs of usable answers in languages a and b; None
    when the measure is lexical or the model does not read one of the languages."""
    if sim.measure != "semantic" or not (embeds(a) and embeds(b)):
        return None, False
    values = [sim.across(x["output"], y["output"]) for x in ours for y in theirs]
    return _mean([v for v in values if v is not None]), True


def across_languages(
    languages: list[str], classes: dict[str, dict], entries: list[dict], regions: list[str], sim
) -> list[dict]:
    """Returns one entry per region: `{"region", "classes": {lang: class}, "judgements":
    {lang: label}, "similarity", "measure", "classes_differ", "pairs"}`; [] for one language.

    `classes` holds each language's region classes ({lang: {region: class}}). `similarity` is
    the mean over the language pairs the model reads of the mean similarity between their
    usable answers; null with `measure` "none" when no pair can be measured semantically.
    """
    if len(languages) < 2:
        return []
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for entry in entries:
        by_cell[(entry["region"], entry["language"])].append(entry)
    compared = []
    for region in regions:
        usable = {
            lang: [e for e in by_cell[(region, lang)] if e["classification"] in ANSWERED]
            for lang in languages
        }
        pairs, values, measured = [], [], False
        for a, b in combinations(languages, 2):
            value, readable = _pair(sim, usable[a], usable[b], a, b)
            measured = measured or readable
            pairs.append({"languages": [a, b], "similarity": _rounded(value)})
            if value is not None:
                values.append(value)
        found = {lang: classes[lang].get(region) for lang in languages}
        compared.append(
            {
                "region": region,
                "classes": found,
                "judgements": {lang: _label(by_cell[(region, lang)]) for lang in languages},
                "similarity": _rounded(_mean(values)),
                "measure": "semantic" if measured and values else "none",
                "classes_differ": len({c for c in found.values() if c is not None}) > 1,
                "pairs": pairs,
            }
        )
    return compared
