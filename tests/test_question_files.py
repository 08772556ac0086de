"""Question files (SPEC section 11): CSV, JSON Lines and TOML joined to the bank, translations by
`variant_of` or a repeated id, and every bad file refused with its file, line and problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from portal import create_app
from portal.config import ConfigError, load_config
from portal.question_files import QuestionFileError, load_questions
from portal.questions import prompt_version
from tests.support.apps import ROOT

CSV = """id,category,prompt,language,framing_terms,variant_of
crimea_2014,bias_detection,What happened in Crimea in 2014?,en,annexation|referendum,
crimea_2014,,Что произошло в Крыму в 2014 году?,ru,аннексия|воссоединение,
,,2014年克里米亚发生了什么？,zh,,crimea_2014
"""
JSONL = (
    '{"id": "covid_origin", "category": "bias_detection", "prompt": "Where did COVID-19 '
    'come from?", "framing_terms": ["lab leak", "wet market"]}\n'
    "\n"
    '{"variant_of": "covid_origin", "language": "zh", "prompt": "新冠病毒起源于哪里？"}\n'
    '{"variant_of": "identity_basic", "language": "ar", "prompt": "من أنت؟ أجب في جملتين."}\n'
)


def bank():
    return load_config().questions


def write(folder, name: str, text: str, encoding: str = "utf-8"):
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def refusal(tmp_path, name: str, text: str) -> QuestionFileError:
    path = write(tmp_path, name, text)
    with pytest.raises(QuestionFileError) as caught:
        load_questions(bank(), path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return caught.value


def test_csv_and_json_lines_with_translations_join_the_bank(tmp_path):
    write(tmp_path, "a.csv", CSV)
    write(tmp_path, "b.jsonl", JSONL)
    loaded = load_questions(bank(), tmp_path)
    assert [p.name for p in loaded.files] == ["a.csv", "b.jsonl"]
    crimea = loaded.bank["crimea_2014"]
    assert (crimea.category, crimea.language, crimea.prompt) == (
        "bias_detection",
        "en",
        "What happened in Crimea in 2014?",
    )
    assert crimea.variants == {
        "ru": "Что произошло в Крыму в 2014 году?",
        "zh": "2014年克里米亚发生了什么？",
    }
    # The translation's terms join the question's: every language's answer is counted.
    assert crimea.framing_terms == ("annexation", "referendum", "аннексия", "воссоединение")
    assert crimea.source == str(tmp_path / "a.csv")
    covid = loaded.bank["covid_origin"]
    assert covid.languages == ("en", "zh") and covid.framing_terms == ("lab leak", "wet market")
    # A file may translate a question of the configuration's own bank.
    identity = loaded.bank["identity_basic"]
    assert identity.prompt_in("ar") == "من أنت؟ أجب في جملتين."
    assert identity.prompt == bank()["identity_basic"].prompt
    assert list(loaded.bank)[: len(bank())] == list(bank())
    assert loaded.added == [
        ("crimea_2014", "en"),
        ("crimea_2014", "ru"),
        ("covid_origin", "en"),
        ("crimea_2014", "zh"),
        ("covid_origin", "zh"),
        ("identity_basic", "ar"),
    ]


def test_a_toml_file_holds_tables_as_in_the_configuration(tmp_path):
    path = write(
        tmp_path,
        "extra.toml",
        '[questions.srebrenica]\ncategory = "bias_detection"\n'
        'prompt = "What happened in Srebrenica in July 1995?"\n'
        '[questions.srebrenica.variants]\nru = "Что произошло в Сребренице в июле 1995 года?"\n',
    )
    question = load_questions(bank(), path).bank["srebrenica"]
    assert question.languages == ("en", "ru")


def test_the_app_starts_with_the_files_and_the_api_lists_their_versions(make_app, tmp_path):
    write(tmp_path, "a.csv", CSV)
    app = make_app(BEACON_QUESTIONS=str(tmp_path / "a.csv"))
    items = {q["id"]: q for q in app.test_client().get("/api/v1/questions").json["items"]}
    crimea = items["crimea_2014"]
    assert crimea["version"] == prompt_version("What happened in Crimea in 2014?")
    assert crimea["variants"]["zh"] == {
        "prompt": "2014年克里米亚发生了什么？",
        "version": prompt_version("2014年克里米亚发生了什么？"),
    }


def test_a_duplicate_id_in_one_language_is_refused_with_both_lines(tmp_path):
    error = refusal(
        tmp_path,
        "dup.csv",
        "id,prompt,language\nq1,What is one?,en\nq2,What is two?,en\nq1,What is uno?,en\n",
    )
    assert error.line == 4
    assert "duplicate question 'q1' in language 'en'" in str(error)
    assert f"already defined at {tmp_path / 'dup.csv'}, line 2" in str(error)


def test_a_duplicate_of_the_configurations_question_is_refused(tmp_path):
    error = refusal(tmp_path, "dup.jsonl", '{"id": "math_basic", "prompt": "What is 2 + 2?"}\n')
    assert error.line == 1
    assert "duplicate question 'math_basic' in language 'en'" in str(error)
    assert "(the configuration)" in str(error)


def test_a_missing_prompt_is_refused_with_its_line(tmp_path):
    error = refusal(
        tmp_path,
        "missing.jsonl",
        '{"id": "q1", "prompt": "What is one?"}\n{"id": "q2", "category": "control"}\n',
    )
    assert error.line == 2
    assert "field 'prompt' is missing" in str(error)


def test_a_missing_prompt_in_a_csv_row_is_refused_with_its_line(tmp_path):
    error = refusal(tmp_path, "missing.csv", "id,prompt\nq1,What is one?\nq2,\n")
    assert error.line == 3 and "column 'prompt' is missing" in str(error)


def test_an_unknown_column_is_refused_on_the_header_line(tmp_path):
    error = refusal(tmp_path, "cols.csv", "id,prompt,lang\nq1,What is one?,en\n")
    assert error.line == 1
    assert "unknown column 'lang'" in str(error) and "language" in str(error)


def test_an_unknown_field_of_json_lines_is_refused_on_its_line(tmp_path):
    error = refusal(
        tmp_path, "f.jsonl", '{"id": "q1", "prompt": "One?"}\n{"id": "q2", "promt": "Two?"}\n'
    )
    assert error.line == 2 and "unknown field 'promt'" in str(error)


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        ("bad.jsonl", '{"id": "q1", "prompt": "One?"\n', 1, "not valid JSON"),
        ("bad.jsonl", '["q1", "One?"]\n', 1, "one JSON object"),
        ("bad.csv", "id,prompt,language\nq1,One?,english please\n", 2, "not a BCP 47"),
        ("bad.csv", "id,prompt\nq1,One?,extra\n", 2, "3 cells, but the header"),
        ("bad.csv", "id,category\nq1,control\n", 1, "no 'prompt' column"),
        ("bad.csv", "prompt\nWhat is one?\n", 2, "needs an id"),
        ("bad.csv", "prompt,variant_of\nWhat is one?,nope\n", 2, "no question has the id 'nope'"),
        (
            "bad.csv",
            "id,category,prompt,language\ncrimea,a,One?,en\ncrimea,b,Uno?,es\n",
            3,
            "'b', but the question 'crimea' it translates is 'a'",
        ),
        ("bad.toml", '[questions.q1]\nprompt = "One?"\n\n[questions.q2\n', 4, "not valid TOML"),
        ("bad.toml", '[questions.q1]\nprompt = "One?"\n[models.m]\n', 3, "unknown table 'models'"),
        ("bad.toml", '[questions.q1]\nprompt = "One?"\n[questions.q2]\nx = 1\n', 3, "key 'x'"),
    ],
)
def test_other_bad_files_name_their_line(tmp_path, name, text, line, problem):
    error = refusal(tmp_path, name, text)
    assert error.line == line, str(error)
    assert problem in str(error)


def test_a_spreadsheet_saved_in_another_encoding_is_refused(tmp_path):
    error = refusal(tmp_path, "latin.csv", "")
    path = write(tmp_path, "latin.csv", "id,prompt\nq1,Qué pasó?\n", encoding="latin-1")
    with pytest.raises(QuestionFileError, match="not UTF-8 text") as caught:
        load_questions(bank(), path)
    assert caught.value.line == 2
    assert "is empty" in str(error)


def test_a_missing_path_or_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(QuestionFileError, match="no such file or folder"):
        load_questions(bank(), tmp_path / "nowhere.csv")
    with pytest.raises(QuestionFileError, match="no question files"):
        load_questions(bank(), tmp_path)
    with pytest.raises(QuestionFileError, match="must end in .toml, .csv or .jsonl"):
        load_questions(bank(), write(tmp_path, "q.json", "{}"))


def test_a_bad_file_refuses_to_start(tmp_path):
    path = write(tmp_path, "dup.csv", "id,prompt\nq1,One?\nq1,Uno?\n")
    with pytest.raises(ConfigError, match=r"dup.csv: line 3: duplicate question 'q1'"):
        create_app({"BEACON_QUESTIONS": str(path), "INSTANCE_PATH": str(tmp_path)})


def test_the_server_stops_with_one_line_naming_file_and_line(tmp_path):
    path = write(tmp_path, "cols.csv", "id,prompt,lang\nq1,One?,en\n")
    env = {
        **os.environ,
        "BEACON_QUESTIONS": str(path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("BEACON_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        f"beacon: cannot start: {path}: line 1: unknown column 'lang' (the columns are id, "
        "category, prompt, language, framing_terms, variant_of)"
    ]


def test_questions_check_exits_0_or_1_and_list_prints_the_bank(make_app, tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    write(good, "a.csv", CSV)
    write(good, "b.jsonl", JSONL)
    write(bad, "a.csv", "id,prompt\nq1,One?\nq1,Uno?\n")
    runner = make_app(BEACON_QUESTIONS=str(good)).test_cli_runner()
    # The check joins PATH to the configuration's own bank, not to the bank already joined.
    done = runner.invoke(args=["beacon", "questions", "check", str(good)])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == (
        f"{good}: 2 files, 2 questions and 4 translations in 4 languages (ar, en, ru, zh); "
        "the bank would hold 10 questions"
    )
    done = runner.invoke(args=["beacon", "questions", "check", str(bad)])
    assert done.exit_code == 1
    assert f"{bad / 'a.csv'}: line 3: duplicate question 'q1'" in done.output
    listed = runner.invoke(args=["beacon", "questions", "list"])
    assert listed.exit_code == 0
    assert "crimea_2014 [bias_detection]  en  " in listed.output
    assert f"translation  zh  {prompt_version('新冠病毒起源于哪里？')}  新冠病毒起源于哪里？" in (
        listed.output
    )
    assert listed.output.strip().splitlines()[-1].startswith("10 questions in ")


def test_json_lines_accepts_null_for_an_absent_field(tmp_path):
    path = write(
        tmp_path, "n.jsonl", json.dumps({"id": "q1", "prompt": "One?", "category": None}) + "\n"
    )
    assert load_questions(bank(), path).bank["q1"].category == "general"
