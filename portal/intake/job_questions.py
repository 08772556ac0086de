"""Which questions a job asks, in which languages (SPEC sections 4 and 11): bank ids resolved to
their prompts and translations, literal prompts kept as written, and the JobSpec's `languages`.
"""

from __future__ import annotations

from portal.config import BeaconConfig
from portal.errors import Invalid
from portal.questions import LITERAL_LANGUAGE, language_tag, prompt_version
from portal.storable import storable_text

MAX_PROMPT_CHARS = 8_000


def normalize_questions(
    spec: dict, config: BeaconConfig, languages: list[str] | None = None
) -> list[dict]:
    """Returns [{"index", "id", "prompt", "language", "version", "languages"}]: bank ids resolved
    to their prompts, literal prompts kept (language "und").

    `languages` (each entry {"language", "prompt", "version"}) are the languages the question is
    asked in: without a `languages` list its own only; with one, each listed language it has,
    its own first when listed. A question that has none of them is asked in its own, so every
    question of the job is asked. The question's `language`, `prompt` and `version` are those
    of its first. A listed language that no question has is refused (unknown_language).
    """
    raw = spec.get("questions") or []
    if not raw:
        prompt = _input_prompt(spec)
        if prompt is None:
            raise Invalid(
                "no_prompt",
                "the spec has no questions and no benchmark.input.data.prompt: nothing to ask",
            )
        raw = [prompt]
    questions = []
    offered: dict[str, None] = {}
    for entry in raw:
        question_id, prompt = _question(entry, config)
        if question_id is None:
            every = {LITERAL_LANGUAGE: prompt}
        else:
            bank = config.questions[question_id]
            every = {lang: bank.prompt_in(lang) for lang in bank.languages}
        offered.update(dict.fromkeys(every))
        own = next(iter(every))
        listed = [lang for lang in languages or [] if lang in every]
        chosen = ([own] if own in listed else []) + [lang for lang in listed if lang != own]
        asked = [
            {"language": lang, "prompt": every[lang], "version": prompt_version(every[lang])}
            for lang in chosen or [own]
        ]
        questions.append(
            {"index": len(questions), "id": question_id, **asked[0], "languages": asked}
        )
    for language in languages or []:
        if language not in offered:
            raise Invalid(
                "unknown_language",
                f"no question of this job is in language {language!r}; its questions are in: "
                f"{', '.join(offered)}",
                {"languages": language},
            )
    return questions


def normalize_languages(spec: dict, metadata: dict) -> list[str] | None:
    """Reads `metadata.languages` or top-level `languages`: BCP 47 tags, deduplicated in order."""
    raw = metadata.get("languages", spec.get("languages"))
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise Invalid(
            "invalid_field",
            "languages must be a list of language tags",
            {"languages": "not a list"},
        )
    tags = []
    for entry in raw:
        tag = language_tag(entry) if isinstance(entry, str) else None
        if tag is None:
            raise Invalid(
                "invalid_field",
                f"languages: {entry!r} is not a BCP 47 language tag (e.g. en, zh, pt-BR)"[:200],
                {"languages": repr(entry)[:200]},
            )
        if tag not in tags:
            tags.append(tag)
    return tags


def _question(entry: object, config: BeaconConfig) -> tuple[str | None, str]:
    if isinstance(entry, dict):
        entry = entry.get("id") or entry.get("prompt")
    if not isinstance(entry, str) or not entry.strip():
        raise Invalid(
            "invalid_field",
            "each question must be a question id or prompt text",
            {"questions": repr(entry)[:200]},
        )
    text = entry.strip()
    if text in config.questions:
        return text, config.questions[text].prompt
    if not any(c.isspace() for c in text):
        # A bare token that is not a known id must never reach a model as its prompt.
        raise Invalid(
            "unknown_question",
            f"unknown question id {text!r}; known ids: {', '.join(config.questions)}",
            {"questions": text},
        )
    if len(text) > MAX_PROMPT_CHARS:
        raise Invalid(
            "invalid_field",
            f"a prompt is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}",
            {"questions": text[:80]},
        )
    # Verified as signed; stored and asked as both databases can hold it (no NUL).
    return None, storable_text(text)


def _input_prompt(spec: dict) -> str | None:
    benchmark = spec.get("benchmark")
    source = benchmark.get("input") if isinstance(benchmark, dict) else None
    data = source.get("data") if isinstance(source, dict) else None
    prompt = data.get("prompt") if isinstance(data, dict) else None
    return storable_text(prompt) if isinstance(prompt, str) and prompt.strip() else None
