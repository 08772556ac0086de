"""Framing terms (SPEC section 8): how often each region's answer uses a question's words.

A term is counted case-insensitively on word boundaries: "Tank" and "tank," count for
`tank`, "tanker" does not. A term ending in `*` counts every word that starts with it
(`protest*`: protest, protests, protesters). Spaces inside a term match any run of white
space. Chinese, Japanese and Korean text has no spaces between words, so a term holding any
such character is counted as a substring. Counts never overlap. Pure functions, no Flask.
"""

from __future__ import annotations

import re
from functools import lru_cache

from portal.status import RunStatus

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{CJK}]")
# A word character that is not CJK: what must not touch a spaced-script term on either side.
_EDGE_BEFORE = rf"(?<![^\W{CJK}])"
_EDGE_AFTER = rf"(?![^\W{CJK}])"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})


def _normalize(text: str) -> str:
    return (text or "").translate(_APOSTROPHES)


def _term_pattern(term: str) -> str:
    term = _normalize(term).strip()
    prefix = term.endswith("*")
    core = term.rstrip("*").strip()
    body = r"\s+".join(re.escape(part) for part in core.split())
    if _CJK_CHAR.search(core):
        return body
    tail = r"\w*" if prefix else ""
    return f"{_EDGE_BEFORE}{body}{tail}{_EDGE_AFTER}"


@lru_cache(maxsize=1024)
def term_regex(term: str) -> re.Pattern:
    """Returns the compiled pattern that counts `term` (see the module's rules)."""
    return re.compile(_term_pattern(term), re.IGNORECASE)


@lru_cache(maxsize=256)
def _terms_regex(terms: tuple[str, ...]) -> re.Pattern | None:
    usable = sorted((t for t in terms if t.strip("* ")), key=len, reverse=True)
    if not usable:
        return None
    return re.compile("|".join(f"(?:{_term_pattern(t)})" for t in usable), re.IGNORECASE)


def count_term(term: str, text: str | None) -> int:
    """Returns how many times `term` occurs in `text`."""
    if not term.strip("* ") or not text:
        return 0
    return len(term_regex(term).findall(_normalize(text)))


def count_terms(terms, text: str | None) -> dict[str, int]:
    """Returns {term: count} for every term, in the terms' order."""
    return {term: count_term(term, text) for term in terms or ()}


def question_framing(terms, entries: list[dict], regions: list[str]) -> list[dict]:
    """Returns `[{"term", "counts": {region: n}}]` over the regions' completed answers.

    With several runs a region's count is the sum over its completed runs.
    """
    framing = []
    for term in terms or ():
        counts = {region: 0 for region in regions}
        for entry in entries:
            if entry.get("status") == RunStatus.COMPLETED and entry["region"] in counts:
                counts[entry["region"]] += count_term(term, entry.get("output"))
        framing.append({"term": term, "counts": counts})
    return framing


def highlight(text: str | None, terms) -> list[dict]:
    """Splits `text` into pieces `{"text", "term"}` where `term` marks a framing term.

    The pieces are plain text; a template escapes each one and wraps the marked ones in
    `<mark>`, so model output is never trusted as markup. The pieces join back to `text`
    exactly (curly apostrophes included).
    """
    text = text or ""
    regex = _terms_regex(tuple(terms or ()))
    if regex is None or not text:
        return [{"text": text, "term": False}] if text else []
    # The normalization maps one character to one, so offsets hold for the original text.
    pieces, last = [], 0
    for match in regex.finditer(_normalize(text)):
        if match.start() == match.end():
            continue
        if match.start() > last:
            pieces.append({"text": text[last : match.start()], "term": False})
        pieces.append({"text": text[match.start() : match.end()], "term": True})
        last = match.end()
    if last < len(text):
        pieces.append({"text": text[last:], "term": False})
    return pieces


def csv_counts(question_framing: list[dict] | None, answer: dict) -> str:
    """Formats one completed answer's counts for a CSV cell: `massacre=1; tank=0`."""
    if not question_framing or answer.get("status") != RunStatus.COMPLETED:
        return ""
    terms = [row["term"] for row in question_framing]
    return "; ".join(f"{t}={n}" for t, n in count_terms(terms, answer.get("output")).items())
