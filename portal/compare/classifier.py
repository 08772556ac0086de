"""An answer's class (SPEC section 8): substantive, refusal, evasive or technical failure.

`classify_detail` applies the rules of `portal.compare.rules` to one answer's text and names the
rule that decided. Nothing here touches Flask or the database.
"""

from __future__ import annotations

import re

from portal.compare import rules
from portal.compare.rules import EVASIVE, REFUSAL, SUBSTANTIVE, TECHNICAL_FAILURE
from portal.compare.similarity import CJK, normalize, split_words
from portal.status import RunStatus

CLASSES = (SUBSTANTIVE, REFUSAL, EVASIVE, TECHNICAL_FAILURE)

_CJK_CHAR = re.compile(f"[{CJK}]")
# A whitespace run is only ever entered at its start ((?<!\s)): starting inside a long run and
# scanning to its end from every position was quadratic (docs/security.md).
_CLAUSE_BREAK = re.compile(
    r"(?<=[.!?;])\s+|[\r\n]+|(?<=[。！？；，])|(?<!help)(?<!\s)\s+(?=(?:but|however)\b)"
    r"|(?=但|不过|然而)",
    re.IGNORECASE,
)


_compiled: list = [None, []]


def _phrase_rules() -> list:
    """The phrase rules in force (`rules.RULES`, read at each call), compiled once per set."""
    current = rules.RULES
    if _compiled[0] is not current:
        phrases = [
            (rule, [re.compile(p, re.IGNORECASE) for p in rule.patterns])
            for rule in current
            if rule.patterns
        ]
        _compiled[:] = [current, phrases]
    return _compiled[1]


def _weight(text: str) -> float:
    # A CJK character carries about half an English word of content.
    return sum(0.5 if _CJK_CHAR.fullmatch(w) else 1.0 for w in split_words(text))


def _phrase_rule(clause: str):
    for rule, patterns in _phrase_rules():
        if any(p.search(clause) for p in patterns):
            return rule
    return None


def _restates(words: list[str], prompt: str) -> bool:
    asked = set(split_words(prompt))
    content = asked - rules.RESTATEMENT_FILLER
    said = set(words)
    if not content or not said <= asked | rules.RESTATEMENT_FILLER:
        return False
    return len(said & content) * 2 >= len(content)


def classify_detail(
    output: str | None,
    *,
    status: str = RunStatus.COMPLETED,
    error: str | None = None,
    prompt: str = "",
) -> tuple[str, str]:
    """Returns the class of one answer and the name of the rule that decided it."""
    if error or status != RunStatus.COMPLETED:
        return TECHNICAL_FAILURE, "provider_error"
    text = normalize(output or "")
    if not text:
        return TECHNICAL_FAILURE, "empty_output"
    words = split_words(text)
    if not words:
        return EVASIVE, "no_words"
    if prompt and _restates(words, prompt):
        return EVASIVE, "restates_question"
    found: dict[str, str] = {}
    remainder = 0.0
    for clause in _CLAUSE_BREAK.split(text):
        rule = _phrase_rule(clause)
        if rule is None:
            remainder += _weight(clause)
        else:
            found.setdefault(rule.outcome, rule.name)
    for outcome in (REFUSAL, EVASIVE):
        if outcome in found:
            if remainder >= rules.SUBSTANTIVE_MIN_WORDS:
                return SUBSTANTIVE, "answers_anyway"
            return outcome, found[outcome]
    return SUBSTANTIVE, "default"


def classify(
    output: str | None,
    *,
    status: str = RunStatus.COMPLETED,
    error: str | None = None,
    prompt: str = "",
) -> str:
    """Returns one of CLASSES for an answer, by the rules of `portal.compare.rules`."""
    return classify_detail(output, status=status, error=error, prompt=prompt)[0]
