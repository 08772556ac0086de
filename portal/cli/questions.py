"""`flask beacon questions check PATH | list`: question files checked before use, and the bank."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from portal import settings
from portal.config import EMBEDDED, ConfigError, load_config
from portal.question_files import load_questions
from portal.questions import prompt_version

questions_group = AppGroup("questions", help="Question files and the question bank.")


@questions_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def check_command(path: Path):
    """Checks question files (a file or a folder) against the configuration's bank, starting
    nothing; prints how many questions and languages it read, or the first problem (exit 1)."""
    config = settings.current().config
    try:
        # The configuration's own bank, without the files BEACON_QUESTIONS already added.
        own = load_config(None if config.source == EMBEDDED else config.source).questions
        loaded = load_questions(own, path, config.source)
    except ConfigError as exc:
        click.echo(f"beacon: {exc}", err=True)
        raise SystemExit(1) from None
    new = {qid for qid, _ in loaded.added if qid not in own}
    bank = loaded.bank
    translations = sum(qid in own or lang != bank[qid].language for qid, lang in loaded.added)
    languages = sorted({lang for _, lang in loaded.added})
    files = len(loaded.files)
    click.echo(
        f"{path}: {files} file{'s' if files != 1 else ''}, {len(new)} question"
        f"{'s' if len(new) != 1 else ''} and {translations} translation"
        f"{'s' if translations != 1 else ''} in {len(languages)} language"
        f"{'s' if len(languages) != 1 else ''} ({', '.join(languages) or 'none'}); "
        f"the bank would hold {len(bank)} questions"
    )


@questions_group.command("list")
def list_command():
    """Prints the question bank: each question and language with its prompt's version."""
    bank = settings.current().config.questions
    languages = set()
    for question in bank.values():
        for language in question.languages:
            languages.add(language)
            prompt = question.prompt_in(language)
            first = language == question.language
            head = f"{question.id} [{question.category}]" if first else "  translation"
            click.echo(f"{head}  {language}  {prompt_version(prompt)}  {prompt}")
        if question.source:
            click.echo(f"  (from {question.source})")
    click.echo(
        f"{len(bank)} questions in {len(languages)} language"
        f"{'s' if len(languages) != 1 else ''}: {', '.join(sorted(languages))}"
    )
