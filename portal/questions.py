"""The question bank's questions (SPEC sections 3 and 11): a prompt in its own language, its
translations, and the version of each prompt's text.

A question's `version` is the first 12 hex digits of the SHA-256 of its prompt's UTF-8 bytes:
editing a prompt makes a new version, and every answer keeps the version it was asked with.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

DEFAULT_LANGUAGE = "en"
# A literal prompt from a JobSpec: its language is not determined (BCP 47 "und").
LITERAL_LANGUAGE = "und"
VERSION_HEX = 12
# BCP 47 as used in practice: a 2-3 letter language, then optional script, region, variants.
LANGUAGE_TAG = re.compile(
    r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8})*"
)
KEYS = {
    "prompt": str,
    "category": str,
    "framing_terms": list,
    "language": str,
    "variants": dict,
}


class QuestionError(ValueError):
    """A question entry breaks a rule; `key` is its dotted key below the question's id."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Question:
    """A bank question: its prompt in its own language and its translations."""

    id: str
    prompt: str
    category: str = "general"
    framing_terms: tuple[str, ...] = ()
    language: str = DEFAULT_LANGUAGE
    variants: dict[str, str] = field(default_factory=dict)
    # Where it was defined: a question file's path, or "" for the configuration's own bank.
    source: str = field(default="", compare=False)

    @property
    def version(self) -> str:
        """The version of the original prompt."""
        return prompt_version(self.prompt)

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language the question can be asked in, its own first."""
        return (self.language, *self.variants)

    def prompt_in(self, language: str) -> str | None:
        """The prompt in `language`, or None when the question has no such translation."""
        return self.prompt if language == self.language else self.variants.get(language)


def prompt_version(prompt: str) -> str:
    """A prompt's version: the first 12 hex digits of the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:VERSION_HEX]


def asked_languages(question: dict) -> list[dict]:
    """The [{"language", "prompt", "version"}] a job's question is asked in, in order; a job
    stored before languages were asked gives its one prompt (its language `en` if unstated)."""
    if question.get("languages"):
        return question["languages"]
    prompt = question.get("prompt") or ""
    return [
        {
            "language": question.get("language") or DEFAULT_LANGUAGE,
            "prompt": prompt,
            "version": question.get("version") or prompt_version(prompt),
        }
    ]


def bank_languages(bank: dict[str, Question]) -> dict[str, int]:
    """{language: how many questions have it} over the bank, in the order they first appear."""
    counts: dict[str, int] = {}
    for question in bank.values():
        for language in question.languages:
            counts[language] = counts.get(language, 0) + 1
    return counts


def job_languages(questions: list[dict]) -> list[str]:
    """Every language a job's questions are asked in, in the order they first appear."""
    found = dict.fromkeys(a["language"] for q in questions for a in asked_languages(q))
    return list(found)


def language_tag(text: str) -> str | None:
    """Returns the BCP 47 tag in its usual case (`zh-Hant`, `pt-BR`), or None when `text` is
    not shaped like one."""
    if not isinstance(text, str) or not LANGUAGE_TAG.fullmatch(text):
        return None
    first, *rest = text.split("-")
    out = [first.lower()]
    for part in rest:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())
        elif len(part) == 2 and part.isalpha():
            out.append(part.upper())
        else:
            out.append(part.lower())
    return "-".join(out)


def parse_question(key: str, entry: dict) -> Question:
    """Builds the question `key` from its table; raises QuestionError naming the bad key."""
    for name, value in entry.items():
        if name not in KEYS:
            raise QuestionError(f"{key}.{name}", f"unknown key (known: {', '.join(KEYS)})")
        if not isinstance(value, KEYS[name]):
            raise QuestionError(f"{key}.{name}", f"must be a {KEYS[name].__name__}")
    if any(c.isspace() for c in key):
        raise QuestionError(key, "question id must not contain whitespace")
    if not entry.get("prompt", "").strip():
        raise QuestionError(f"{key}.prompt", "required and must not be empty")
    terms = entry.get("framing_terms", [])
    if not all(isinstance(t, str) and t.strip("* ") for t in terms):
        raise QuestionError(f"{key}.framing_terms", "must be a list of non-empty strings")
    language = _tag(f"{key}.language", entry.get("language", DEFAULT_LANGUAGE))
    variants = {}
    for raw, prompt in entry.get("variants", {}).items():
        where = f"{key}.variants.{raw}"
        if not isinstance(prompt, str) or not prompt.strip():
            raise QuestionError(where, "must be the prompt in that language, a non-empty string")
        variants[_tag(where, raw)] = prompt
    if language in variants:
        raise QuestionError(f"{key}.variants.{language}", "is the question's own language")
    return Question(
        id=key,
        prompt=entry["prompt"],
        category=entry.get("category", "general"),
        framing_terms=tuple(dict.fromkeys(t.strip() for t in terms)),
        language=language,
        variants=variants,
    )


def _tag(where: str, text: str) -> str:
    tag = language_tag(text)
    if tag is None:
        raise QuestionError(where, f"{text!r} is not a BCP 47 language tag (e.g. en, zh, pt-BR)")
    return tag
