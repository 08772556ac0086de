"""How well the configured judge agrees with the rules: `flask beacon judge-agreement`.

The judge labels the written classification examples
(`tests/compare/test_classify_examples.py`); its labels are compared with the rule-based class
of each example and with the class the example expects, both seen as judge labels
(`judge_config.RULE_TO_LABEL`), by raw agreement and Cohen's kappa. Examples that are technical
failures (failed calls, empty output) are left out: the judge only ever sees completed answers
with text.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from portal import compare
from portal.config import BeaconConfig
from portal.judge.config import ERROR, expected_label
from portal.judge.labels import JUDGE_MAX_TOKENS, build_prompt, call_judge, parse_reply
from portal.status import RunStatus

NO_QUESTION = "(the question was not recorded)"


def load_examples(path: Path) -> list:
    """Returns the `EXAMPLES` list of a written-examples file."""
    spec = importlib.util.spec_from_file_location("beacon_judge_examples", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.EXAMPLES)


def judgeable(example) -> bool:
    """Says whether the judge would see this example: a completed answer with some text."""
    if example.status != RunStatus.COMPLETED or not (example.output or "").strip():
        return False
    return expected_label(example.expected) is not None


def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    """Returns Cohen's kappa of two raters' labels; None when chance agreement is total."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def agreement(pairs: list[tuple[str, str]]) -> float | None:
    """Returns the share of pairs whose two labels are the same."""
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def run(config: BeaconConfig, examples: list, limit: int | None = None, progress=None) -> dict:
    """Judges each judgeable example with the configured judge; returns the report."""
    rows = []
    for example in [e for e in examples if judgeable(e)][:limit]:
        rule = compare.classify(
            example.output, status=example.status, error=example.error, prompt=example.prompt
        )
        prompt = build_prompt(example.prompt or NO_QUESTION, example.output)
        attempts = Counter()

        def record_attempt(counter=attempts) -> int:
            counter["n"] += 1
            return counter["n"]

        reply, error = call_judge(
            config, prompt, max_tokens=JUDGE_MAX_TOKENS, record_attempt=record_attempt
        )
        row = {
            "output": example.output,
            "judge": parse_reply(reply) or ERROR,
            "reply": reply if reply is not None else error,
            "rules": expected_label(rule) or ERROR,
            "expected": expected_label(example.expected),
        }
        rows.append(row)
        if progress:
            progress(row)
    return report(rows)


def report(rows: list[dict]) -> dict:
    """Returns agreement and kappa of the judge against the rules and the expected labels."""
    against = {}
    for other in ("rules", "expected"):
        pairs = [(r["judge"], r[other]) for r in rows]
        against[other] = {
            "agreement": agreement(pairs),
            "kappa": cohen_kappa(pairs),
            "differ": [r for r in rows if r["judge"] != r[other]],
        }
    return {
        "examples": len(rows),
        "judge_labels": dict(Counter(r["judge"] for r in rows)),
        "against": against,
    }
