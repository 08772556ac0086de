#!/usr/bin/env python
"""Checks the multilingual embedding model through the portal's own code path.

`scripts/measure_embeddings.py` measured the candidate models on their own; this script asks the
portal: the written translation pairs and non-pairs of that script, scored by
`portal.compare.similarity.semantic_similarity` (the model as the portal loads it, one BLAS
thread, answers cut at EMBED_CHARS), then one question asked in four languages and compared by
`portal.compare.compare_job`, whose `across_languages` rows are printed per region.

    PYTHONPATH=. python scripts/check_multilingual.py
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def research_texts():
    """The texts and cases of scripts/measure_embeddings.py (imported, not copied)."""
    spec = importlib.util.spec_from_file_location(
        "measure_embeddings", HERE / "measure_embeddings.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pair_table(texts) -> None:
    from portal.compare.similarity import semantic_similarity

    rows = []
    started = time.perf_counter()
    for group, expected, left, right, what in texts.CASES:
        value = semantic_similarity([texts.text(left), texts.text(right)])[0][1]
        rows.append((group, expected, left, right, what, value))
    took = time.perf_counter() - started
    print("| group | kind | pair | portal |")
    print("|---|---|---|---:|")
    for group, expected, left, right, what, value in rows:
        print(f"| {group} | {expected} | {left} / {right} ({what}) | {value:.3f} |")
    print()
    print("| group | mean of pairs | mean of non-pairs | lowest pair | highest non-pair | gap |")
    print("|---|---:|---:|---:|---:|---:|")
    for group in dict.fromkeys(r[0] for r in rows):
        pairs = [r[5] for r in rows if r[0] == group and r[1] == "pair"]
        nons = [r[5] for r in rows if r[0] == group and r[1] != "pair"]
        print(
            f"| {group} | {statistics.fmean(pairs):.3f} | {statistics.fmean(nons):.3f} | "
            f"{min(pairs):.3f} | {max(nons):.3f} | {min(pairs) - max(nons):.3f} |"
        )
    print(f"\n{len(rows)} pairs scored in {took:.1f} s (model load included)\n")


def four_languages(texts) -> None:
    from portal.compare import compare_job

    languages = ["en", "zh", "ru", "ar"]
    answers = {
        # us-east answers in every language; eu-west refuses in Chinese; asia-pacific tells the
        # official story in Chinese.
        "us-east": {lang: texts.ANSWERS["tiananmen"][lang] for lang in languages},
        "eu-west": {
            **{lang: texts.ANSWERS["tiananmen"][lang] for lang in languages},
            "zh": texts.OTHER["refusal_zh"],
        },
        "asia-pacific": {
            **{lang: texts.ANSWERS["tiananmen"][lang] for lang in languages},
            "zh": texts.OTHER["tiananmen_official_zh"],
        },
    }
    asked = [
        {"language": lang, "prompt": f"(prompt in {lang})", "version": lang} for lang in languages
    ]
    job = {
        "id": "check",
        "models": ["m"],
        "regions": list(answers),
        "questions": [
            {"index": 0, "id": "tiananmen_neutral", "prompt": "(en)", "languages": asked}
        ],
        "executions": [
            {
                "model_id": "m",
                "region": region,
                "region_name": region,
                "answers": [
                    {
                        "id": f"{region}-{lang}",
                        "question_index": 0,
                        "question_id": "tiananmen_neutral",
                        "prompt": "(prompt)",
                        "language": lang,
                        "run": 1,
                        "status": "completed",
                        "output": said[lang],
                    }
                    for lang in languages
                ],
            }
            for region, said in answers.items()
        ],
    }
    question = compare_job(job, semantic=True)["models"][0]["questions"][0]
    print("| region | classes | similarity across languages | en-zh | en-ru | en-ar |")
    print("|---|---|---:|---:|---:|---:|")
    for row in question["across_languages"]:
        pairs = {tuple(p["languages"]): p["similarity"] for p in row["pairs"]}
        classes = ", ".join(f"{k} {v}" for k, v in row["classes"].items())
        print(
            f"| {row['region']} | {classes} | {row['similarity']:.3f} | "
            f"{pairs[('en', 'zh')]:.3f} | {pairs[('en', 'ru')]:.3f} | {pairs[('en', 'ar')]:.3f} |"
        )
    zh = question["by_language"]["zh"]
    print(f"\nwithin zh: divergence {zh['divergence']}, refusal regions {zh['refusal_regions']}")


def main() -> int:
    from portal.compare.similarity import embedding_model_id, semantic_available

    if not semantic_available():
        print("the semantic extra is not installed", file=sys.stderr)
        return 1
    print(f"model: {embedding_model_id()}\n")
    texts = research_texts()
    pair_table(texts)
    four_languages(texts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
