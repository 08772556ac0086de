#!/usr/bin/env python
"""Times the comparison of a 1,000-answer job and the memory it takes, in a fresh process.

A worker compares a job once, when it ends (`portal.compare.report.precompute`): it loads the
sentence-embedding model on first use, embeds every distinct answer, and computes the
similarities, diffs and classes. This script does that work on a written job of 1,000 answers
with the portal's own `compare_job`, in a process of its own, and prints:

- RSS before the comparison (the portal's comparison code imported) and the peak after it
  (VmRSS and VmHWM from /proc/self/status): what comparing adds to a worker;
- the wall and CPU time of the first comparison (model load included), and of a second one on
  new texts of the same size (model loaded, no embedding cached): the steady cost per job;
- the lexical comparison of the same job, for reference.

    python scripts/bench_compare.py                     # 5 models x 4 regions x 50 questions
    python scripts/bench_compare.py --languages en,zh   # 5 x 4 x 25 questions x 2 languages

Run it from a checkout (PYTHONPATH=.); an older checkout measures the older model the same way.
Answers are about 150 words (900 characters), distinct per model and region.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time

MODELS, REGIONS = 5, 4
EN_WORDS = (
    "the government protest students army square city night troops crowd history event "
    "report official account witnesses killed wounded martial law democracy reform party "
    "leaders economy china beijing june spring movement press censorship memory archive "
    "international response sanctions decades later discussion remains sensitive public "
    "records estimates vary widely between sources historians describe"
).split()
ZH_CHARS = (
    "政府学生军队广场城市夜晚人群历史事件报告官方记录证人"
    "死亡受伤戒严民主改革经济北京六月运动新闻审查记忆国际"
    "回应制裁争议敏感估计来源不同"
)


def proc_mb(field: str) -> float:
    """Returns a /proc/self/status figure (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def answer(rng: random.Random, language: str) -> str:
    """An answer of about 150 words (or 300 Chinese characters), in sentences."""
    if language == "zh":
        return "。".join(
            "".join(rng.choice(ZH_CHARS) for _ in range(rng.randint(15, 30))) for _ in range(12)
        )
    sentences = []
    for _ in range(10):
        words = [rng.choice(EN_WORDS) for _ in range(rng.randint(12, 18))]
        sentences.append(" ".join(words).capitalize())
    return ". ".join(sentences) + "."


def job(seed: int, languages: list[str]) -> dict:
    """A job of 1,000 completed answers: models x regions x questions x languages."""
    rng = random.Random(seed)
    per_question = len(languages)
    questions = 1000 // (MODELS * REGIONS * per_question)
    qs = []
    for i in range(questions):
        asked = [{"language": lang, "prompt": f"Question {i} ({lang})?"} for lang in languages]
        qs.append({"index": i, "id": f"q{i}", "prompt": asked[0]["prompt"], "languages": asked})
    executions, answer_id = [], 0
    for m in range(MODELS):
        for r in range(REGIONS):
            answers = []
            for q in qs:
                for asked in q["languages"]:
                    answer_id += 1
                    answers.append(
                        {
                            "id": answer_id,
                            "question_index": q["index"],
                            "question_id": q["id"],
                            "prompt": asked["prompt"],
                            "language": asked["language"],
                            "run": 1,
                            "status": "completed",
                            "output": answer(rng, asked["language"]),
                            "error": None,
                            "latency_ms": 100,
                            "judgement": None,
                        }
                    )
            executions.append(
                {"model_id": f"m{m}", "region": f"r{r}", "region_name": f"R{r}", "answers": answers}
            )
    return {
        "id": f"bench-{seed}",
        "models": [f"m{m}" for m in range(MODELS)],
        "regions": [f"r{r}" for r in range(REGIONS)],
        "questions": qs,
        "executions": executions,
    }


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="en", help="comma-separated, e.g. en,zh")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]

    from portal.compare import compare_job, semantic_available
    from portal.compare.similarity import embedding_model_id

    first, second = job(1, languages), job(2, languages)
    answers = sum(len(e["answers"]) for e in first["executions"])
    chars = sum(len(a["output"]) for e in first["executions"] for a in e["answers"])
    rss_before = proc_mb("VmRSS")
    lexical = timed(compare_job, first, semantic=False)
    figures = {
        "answers": answers,
        "mean_chars": round(chars / answers),
        "languages": languages,
        "lexical_s": round(lexical[0], 2),
        "lexical_cpu_s": round(lexical[1], 2),
        "semantic": semantic_available(),
    }
    if semantic_available():
        cold = timed(compare_job, first, semantic=True)
        warm = timed(compare_job, second, semantic=True)
        figures.update(
            embedding_model=embedding_model_id(),
            first_semantic_s=round(cold[0], 2),
            first_semantic_cpu_s=round(cold[1], 2),
            next_semantic_s=round(warm[0], 2),
            next_semantic_cpu_s=round(warm[1], 2),
        )
    figures.update(
        rss_before_mb=round(rss_before, 1),
        rss_after_mb=round(proc_mb("VmRSS"), 1),
        peak_rss_mb=round(proc_mb("VmHWM"), 1),
        maxrss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        loadavg=os.getloadavg()[0],
        python=sys.version.split()[0],
    )
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
