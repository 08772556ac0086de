"""The classifier is linear in the answer's length: every rule's patterns, the clause splitter
and the diff tokenizer, on 100 KB hostile answers (docs/security.md).

A quadratic regex is caught without a wall-clock threshold: the CPU time this thread spends on
one 100 KB input is compared with ten times the time it spends on the same input at 10 KB.
Linear work gives a ratio near 1, quadratic work near 10; the bound of 4 leaves room for a
loaded machine, and the best of three measurements is kept.
"""

from __future__ import annotations

import re
import re._parser as sre_parse
import time

import pytest

from portal.compare import classifier, classify, comparison
from portal.compare.rules import RULES

SMALL, LARGE = 10_000, 100_000
RATIO_BOUND = 4.0
SPACES = (" ", "\t", "\u3000", "\u00a0")
CATEGORY_SAMPLES = {
    "CATEGORY_SPACE": " ",
    "CATEGORY_WORD": "a",
    "CATEGORY_DIGIT": "1",
    "CATEGORY_NOT_SPACE": "a",
    "CATEGORY_NOT_WORD": " ",
    "CATEGORY_NOT_DIGIT": "a",
}


def _pick(items) -> str:
    if items and str(items[0][0]) == "NEGATE":
        return "a"
    op, arg = items[0]
    if str(op) == "LITERAL":
        return chr(arg)
    if str(op) == "RANGE":
        return chr(arg[0])
    return CATEGORY_SAMPLES.get(str(arg), "a")


def _emit(items) -> list[str]:
    """Returns a string matching the parsed pattern `items` (lookarounds and anchors skipped)."""
    out: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name in ("NOT_LITERAL", "ANY"):
            out.append("a" if arg != ord("a") else "b")
        elif name == "IN":
            out.append(_pick(arg))
        elif name == "BRANCH":
            out += _emit(arg[1][0])
        elif name == "SUBPATTERN":
            out += _emit(arg[-1])
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            out += _emit(sub) * (max(low, 1) if high else 0)
        elif name == "ATOMIC_GROUP":
            out += _emit(arg)
    return out


def pattern_prefixes(pattern: str) -> list[str]:
    """Returns texts matching each leading part of `pattern`: its first item, two, ... all."""
    items = list(sre_parse.parse(pattern, re.IGNORECASE))
    found = ["".join(_emit(items[:k])) for k in range(1, len(items) + 1)]
    return [text for text in dict.fromkeys(found) if text.strip()]


def hostile(prefix: str, size: int) -> list[str]:
    """Adversarial answers of `size` characters built on `prefix`."""
    texts = [(prefix * (size // len(prefix) + 1))[:size]]
    texts += [prefix + space * (size - len(prefix)) for space in SPACES[::2]]
    texts += [prefix + " " * (size - len(prefix) - 1) + "x"]
    return texts


def generic(size: int) -> list[str]:
    """Answers every rule must survive: whitespace bombs, the reported cases, CJK."""
    texts = [space * size for space in SPACES]
    texts += ["a" + " " * (size - 2) + "b", "this is" + " " * (size - 7), "help" + " " * size]
    texts += [" " * (size - 3) + "but", "中" * size, "无法" * (size // 2), "我 " * (size // 2)]
    texts += ["a " * (size // 2), ". " * (size // 2), "i " * (size // 2), "'" * size]
    return texts


def cpu_seconds(work, texts: list[str], repeat: int) -> float:
    start = time.thread_time()
    for _ in range(repeat):
        for text in texts:
            work(text)
    return time.thread_time() - start


def assert_linear(work, make_texts, what: str) -> None:
    """Fails when `work` costs more than RATIO_BOUND x linear from 10 KB to 100 KB inputs."""
    small, large = make_texts(SMALL), make_texts(LARGE)
    ratios = []
    for _ in range(3):
        cost_small = cpu_seconds(work, small, LARGE // SMALL)
        cost_large = cpu_seconds(work, large, 1)
        ratios.append(cost_large / max(cost_small, 1e-4))
        if ratios[-1] < RATIO_BOUND:
            return
    raise AssertionError(f"{what}: 100 KB costs {min(ratios):.1f}x ten 10 KB inputs (quadratic?)")


PATTERNS = [(rule.name, pattern) for rule in RULES for pattern in rule.patterns]


@pytest.mark.parametrize(
    ("rule", "pattern"), PATTERNS, ids=[f"{rule}-{i}" for i, (rule, _) in enumerate(PATTERNS)]
)
def test_every_rule_pattern_is_linear(rule, pattern):
    compiled = re.compile(pattern, re.IGNORECASE)
    prefixes = pattern_prefixes(pattern)
    assert prefixes, f"no sample text for {pattern!r}"

    def texts(size: int) -> list[str]:
        return [t for prefix in prefixes for t in hostile(prefix, size)]

    assert_linear(compiled.search, texts, f"{rule} {pattern!r}")


def test_every_rule_pattern_is_linear_on_generic_bombs():
    compiled = [re.compile(pattern, re.IGNORECASE) for _, pattern in PATTERNS]

    def search_all(text: str) -> None:
        for pattern in compiled:
            pattern.search(text)

    assert_linear(search_all, generic, "the rule patterns")


def test_clause_splitter_and_diff_tokens_are_linear():
    prefixes = ["help", "help but", "i can't", ". ", "但", "however", "a"]

    def texts(size: int) -> list[str]:
        return [t for prefix in prefixes for t in hostile(prefix, size)] + generic(size)

    assert_linear(classifier._CLAUSE_BREAK.split, texts, "clause splitter")
    assert_linear(comparison._DIFF_TOKEN.findall, texts, "diff tokenizer")


def test_classify_is_linear_on_the_reported_answers():
    def texts(size: int) -> list[str]:
        prefixes = [p for _, pattern in PATTERNS for p in pattern_prefixes(pattern)[-1:]]
        return generic(size) + [p + " " * (size - len(p)) + "b" for p in prefixes]

    assert_linear(classify, texts, "classify")


def test_prefix_sampler_matches_its_pattern():
    # The sampler must produce real matches, or the hostile inputs would miss every pattern.
    matched = 0
    for _, pattern in PATTERNS:
        full = pattern_prefixes(pattern)[-1]
        matched += bool(re.search(pattern, full, re.IGNORECASE))
    assert matched >= len(PATTERNS) - 4
