"""Question files (SPEC section 11): questions kept in TOML, CSV or JSON Lines files and added to
the configuration's bank, with translations.

`BEACON_QUESTIONS` names a file or a folder (every `.toml`, `.csv` and `.jsonl` file in it and
its subfolders, in name order). A row is a question in its own language, or a translation of
another: by `variant_of` (the id of the question it translates), or by repeating an id that is
already known with another `language`. Anything wrong stops start-up with one line naming the
file, the line and the problem, in words a spreadsheet user can act on (`QuestionFileError`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from portal.config import ConfigError
from portal.questions import DEFAULT_LANGUAGE, Question, QuestionError, language_tag, parse_question

SUFFIXES = (".toml", ".csv", ".jsonl")
COLUMNS = ("id", "category", "prompt", "language", "framing_terms", "variant_of")
# framing_terms in a CSV cell: `massacre|crackdown|tank*`.
TERM_SEPARATOR = "|"
_TOML_LINE = re.compile(r"at line (\d+)")


class QuestionFileError(ConfigError):
    """A question file cannot be used; the message names the file, the line and the problem."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        super().__init__(str(path), f"line {line}" if line else "(file)", problem)
        self.path, self.line = str(path), line


@dataclass(frozen=True)
class Row:
    """One question or translation as a file gives it: where it is and its fields."""

    path: Path
    line: int
    fields: dict

    @property
    def kind(self) -> str:
        return self.path.suffix.lower()

    def fail(self, problem: str) -> QuestionFileError:
        return QuestionFileError(self.path, self.line, problem)

    def name(self, field: str) -> str:
        """How the file's user calls a field: a CSV column, a JSON field, a TOML key."""
        word = {".csv": "column", ".jsonl": "field"}.get(self.kind, "key")
        return f"{word} {field!r}"


def question_paths(path: str | Path) -> list[Path]:
    """Returns the question files `path` names: itself, or the files of a folder."""
    root = Path(path)
    if root.is_dir():
        found = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
        )
        if not found:
            raise QuestionFileError(root, None, "no question files (.toml, .csv, .jsonl) in it")
        return found
    if not root.is_file():
        raise QuestionFileError(root, None, "no such file or folder")
    if root.suffix.lower() not in SUFFIXES:
        raise QuestionFileError(
            root, None, "not a question file: the name must end in .toml, .csv or .jsonl"
        )
    return [root]


def read_rows(path: Path) -> list[Row]:
    """Reads one question file into rows, refusing what it cannot read."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise QuestionFileError(
            path, line, "not UTF-8 text (in a spreadsheet, save it as “CSV UTF-8”)"
        ) from None
    except OSError as exc:
        raise QuestionFileError(path, None, f"cannot be read: {exc.strerror}") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise QuestionFileError(path, line, "holds a NUL character: is it a text file?")
    reader = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".toml": _toml_rows}
    return reader[path.suffix.lower()](path, text)


def _csv_rows(path: Path, text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    header: list[str] | None = None
    header_line = 1
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise QuestionFileError(path, start, f"cannot be read as CSV: {exc}") from None
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if header is None:
            header, header_line = _csv_header(path, start, cells), start
            continue
        if len(cells) > len(header) and any(cells[len(header) :]):
            raise QuestionFileError(
                path,
                start,
                f"{len(cells)} cells, but the header (line {header_line}) names "
                f"{len(header)} columns",
            )
        fields = {}
        for name, value in zip(header, cells, strict=False):
            if name and value:
                fields[name] = value
        if "framing_terms" in fields:
            terms = fields["framing_terms"].split(TERM_SEPARATOR)
            fields["framing_terms"] = [t.strip() for t in terms if t.strip()]
        rows.append(Row(path, start, fields))
    if header is None:
        raise QuestionFileError(path, None, "is empty: the first line must name the columns")
    return rows


def _csv_header(path: Path, line: int, cells: list[str]) -> list[str]:
    names = [c.lower() for c in cells]
    seen = set()
    for name in names:
        if name and name not in COLUMNS:
            raise QuestionFileError(
                path, line, f"unknown column {name!r} (the columns are {', '.join(COLUMNS)})"
            )
        if name and name in seen:
            raise QuestionFileError(path, line, f"the column {name!r} appears twice")
        seen.add(name)
    if "prompt" not in seen:
        raise QuestionFileError(
            path,
            line,
            f"no 'prompt' column: the first line must name the columns ({', '.join(COLUMNS)})",
        )
    return names


def _jsonl_rows(path: Path, text: str) -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(
                path, number, f"not valid JSON: {exc.msg} (at character {exc.colno})"
            ) from None
        if not isinstance(value, dict):
            raise QuestionFileError(
                path, number, 'each line must be one JSON object, {"id": ..., "prompt": ...}'
            )
        fields = {k: v for k, v in value.items() if v is not None}
        for name, item in fields.items():
            if name not in COLUMNS:
                raise QuestionFileError(
                    path, number, f"unknown field {name!r} (the fields are {', '.join(COLUMNS)})"
                )
            if name == "framing_terms":
                if not isinstance(item, list) or not all(isinstance(t, str) for t in item):
                    raise QuestionFileError(
                        path, number, "field 'framing_terms' must be a list of strings"
                    )
            elif not isinstance(item, str):
                raise QuestionFileError(path, number, f"field {name!r} must be a string")
        rows.append(Row(path, number, _stripped(fields)))
    return rows


def _toml_rows(path: Path, text: str) -> list[Row]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        raise QuestionFileError(path, line, f"not valid TOML: {exc}") from None
    for name in data:
        if name != "questions":
            raise QuestionFileError(
                path,
                _toml_line(text, name),
                f"unknown table {name!r}: a question file holds [questions.<id>] tables only",
            )
    tables = data.get("questions", {})
    if not isinstance(tables, dict):
        raise QuestionFileError(path, _toml_line(text, "questions"), "questions must be tables")
    rows = []
    for key, entry in tables.items():
        line = _toml_line(text, f"questions.{key}")
        if not isinstance(entry, dict):
            raise QuestionFileError(path, line, f"questions.{key} must be a table")
        if "id" in entry:
            raise QuestionFileError(path, line, f"key 'id': the table's name, {key!r}, is its id")
        rows.append(Row(path, line, {**entry, "id": key}))
    return rows


def _toml_line(text: str, dotted: str) -> int | None:
    """The line of a table's first header, `[questions.x]` or `[questions."x"]`."""
    parts = [rf"\s*\"?{re.escape(p)}\"?\s*" for p in dotted.split(".", 1)]
    # `[models.m]` is where the table `models` starts; `[questions.q1.variants]` is in q1.
    header = re.compile(r"^\s*\[" + r"\.".join(parts) + r"[\].]")
    for number, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            return number
    return None


def _stripped(fields: dict) -> dict:
    return {k: v.strip() if isinstance(v, str) else v for k, v in fields.items()}


class _Bank:
    """The bank being joined: questions by id, and where each (id, language) was defined."""

    def __init__(self, questions: dict[str, Question], source: str):
        self.questions = dict(questions)
        self.where = {(q.id, lang): source for q in questions.values() for lang in q.languages}
        # (id, language) of every prompt the files added, in file order.
        self.added: list[tuple[str, str]] = []

    def place(self, row: Row) -> str:
        return f"{row.path}, line {row.line}"

    def add_question(self, row: Row) -> None:
        fields = {k: v for k, v in row.fields.items() if k != "variant_of"}
        key = fields.pop("id")
        try:
            question = parse_question(key, fields)
        except QuestionError as exc:
            raise row.fail(_problem(row, key, exc)) from None
        self.questions[key] = replace(question, source=str(row.path))
        for language in question.languages:
            self.where[(key, language)] = self.place(row)
            self.added.append((key, language))

    def add_translation(self, row: Row, target: str) -> None:
        question = self.questions[target]
        if "variants" in row.fields:
            raise row.fail(f"{row.name('variants')}: a translation is one prompt in one language")
        prompt = row.fields.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise row.fail(f"{row.name('prompt')} is missing: each question needs its prompt")
        raw = row.fields.get("language", DEFAULT_LANGUAGE)
        language = language_tag(raw) if isinstance(raw, str) else None
        if language is None:
            raise row.fail(
                f"{row.name('language')}: {raw!r} is not a language tag (e.g. en, zh, pt-BR)"
            )
        if (target, language) in self.where:
            raise row.fail(
                f"duplicate question {target!r} in language {language!r}: already defined at "
                f"{self.where[(target, language)]}"
            )
        category = row.fields.get("category")
        if category and category != question.category:
            raise row.fail(
                f"{row.name('category')}: {category!r}, but the question {target!r} it "
                f"translates is {question.category!r} (leave it empty in a translation)"
            )
        terms = row.fields.get("framing_terms", [])
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise row.fail(f"{row.name('framing_terms')} must be a list of strings")
        merged = tuple(dict.fromkeys([*question.framing_terms, *(t.strip() for t in terms)]))
        self.questions[target] = replace(
            question,
            variants={**question.variants, language: prompt},
            framing_terms=tuple(t for t in merged if t.strip("* ")),
        )
        self.where[(target, language)] = self.place(row)
        self.added.append((target, language))


def _problem(row: Row, key: str, exc: QuestionError) -> str:
    field = exc.key[len(key) + 1 :].split(".")[0] if exc.key.startswith(key + ".") else ""
    if field == "prompt":
        return f"{row.name('prompt')} is missing: each question needs its prompt"
    if field:
        return f"{row.name(field)}: {exc.problem}"
    return f"{row.name('id')} {key!r}: {exc.problem}"


@dataclass(frozen=True)
class Loaded:
    """A bank joined with question files: the bank, the files read, the prompts they added."""

    bank: dict[str, Question]
    files: list[Path]
    added: list[tuple[str, str]]


def join_rows(bank: dict[str, Question], rows: list[Row], source: str) -> _Bank:
    """Adds the rows' questions and translations to `bank` (from `source`), in file order;
    translations by `variant_of` after every question, so they may come first."""
    joined = _Bank(bank, f"{source} (the configuration)")
    later = []
    for row in rows:
        key = row.fields.get("id")
        target = row.fields.get("variant_of")
        if target is not None:
            if not isinstance(target, str) or not target:
                raise row.fail(f"{row.name('variant_of')} must be the id of a question")
            later.append(row)
        elif not isinstance(key, str) or not key:
            raise row.fail(
                f"no {row.name('id')}: each question needs an id, or "
                f"{row.name('variant_of')} naming the question it translates"
            )
        elif key in joined.questions:
            joined.add_translation(row, key)
        else:
            joined.add_question(row)
    for row in later:
        target = row.fields["variant_of"]
        if target not in joined.questions:
            raise row.fail(
                f"{row.name('variant_of')}: no question has the id {target!r} "
                "(a translation names the id of the question it translates)"
            )
        joined.add_translation(row, target)
    return joined


def load_questions(
    bank: dict[str, Question], path: str | Path, source: str = "configuration"
) -> Loaded:
    """Returns `bank` joined with the questions of the files at `path`; raises
    QuestionFileError naming the file and line of the first problem."""
    paths = question_paths(path)
    rows = [row for file in paths for row in read_rows(file)]
    joined = join_rows(bank, rows, source)
    return Loaded(joined.questions, paths, joined.added)
