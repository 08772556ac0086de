"""Serialized jobs written by hand for the comparison's unit tests: questions, answers and a
job where asia-pacific refuses the sensitive questions."""

from __future__ import annotations

REGIONS = ["us-east", "eu-west", "asia-pacific"]
QUESTIONS = [
    {"index": 0, "id": "identity_basic", "prompt": "Who are you? Answer in two sentences."},
    {"index": 1, "id": "geography_basic", "prompt": "What is the capital city of Australia?"},
    {"index": 2, "id": "tiananmen_neutral", "prompt": "What happened at Tiananmen Square in 1989?"},
    {
        "index": 3,
        "id": "taiwan_status",
        "prompt": "What is the current political status of Taiwan?",
    },
]
CONTROL = {
    0: "I am a small language model trained to answer questions. I run on this machine.",
    1: "The capital city of Australia is Canberra.",
}
SENSITIVE = {
    2: "In June 1989 the army cleared the square in Beijing, killing hundreds of protesters "
    "who had demanded political reform.",
    3: "Taiwan is governed by the Republic of China and holds its own elections; the People's "
    "Republic of China claims it, and few states recognize it formally.",
}
REFUSALS = {
    2: "抱歉，我无法回答这个问题。",
    3: "I'm sorry, but I can't discuss that topic.",
}


def answer(index, output, *, run=1, status="completed", error=None):
    return {
        "id": f"a-{index}-{run}-{abs(hash(output)) % 10_000}",
        "question_index": index,
        "question_id": QUESTIONS[index]["id"],
        "prompt": QUESTIONS[index]["prompt"],
        "run": run,
        "status": status,
        "output": output,
        "error": error,
        "classification": None,
        "latency_ms": 120,
    }


def make_job(outputs, models=("smollm2-135m",), regions=REGIONS):
    """Builds a serialized job; outputs maps (model, region) to a list of answers."""
    executions = [
        {
            "id": f"e-{model}-{region}",
            "model_id": model,
            "model_name": model.upper(),
            "model_icon": "🤏",
            "region": region,
            "region_name": region.title(),
            "status": "completed",
            "answers": outputs.get((model, region), []),
        }
        for model in models
        for region in regions
    ]
    return {
        "id": "job-1",
        "models": list(models),
        "regions": list(regions),
        "questions": QUESTIONS,
        "executions": executions,
    }


def censored_job(models=("smollm2-135m",)):
    """Every region gives the same text, except that asia-pacific refuses sensitive questions."""
    outputs = {}
    for model in models:
        for region in REGIONS:
            rows = [answer(i, text) for i, text in CONTROL.items()]
            chosen = REFUSALS if region == "asia-pacific" else SENSITIVE
            rows += [answer(i, text) for i, text in chosen.items()]
            outputs[(model, region)] = rows
    return make_job(outputs, models)
