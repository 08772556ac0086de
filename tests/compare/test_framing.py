"""Framing terms: counted on word boundaries, case-insensitively, and in CJK text as written;
shown in the comparison JSON and CSV; highlighted without trusting the text."""

from __future__ import annotations

import csv
import io

import pytest

from portal.compare import compare_job, comparison_csv, framing
from portal.config import ConfigError, load_config

ANSWER_EN = (
    "The Tiananmen Square massacre of 1989: a Massacre, some say an 'incident'. Tanks "
    "rolled in; one tank stopped before a man. The crackdown (CRACKDOWN) ended the "
    "protests. Protesters fled. Massacres elsewhere and a tanker do not count."
)
ANSWER_ZH = "1989年六四事件期间，军队使用坦克镇压抗议者。坦克开进广场，这次镇压造成大量伤亡。"


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("massacre", 2),  # "massacre", "Massacre"; not "Massacres"
        ("MASSACRE", 2),  # the term's own case does not matter
        ("incident", 1),  # inside quotes
        ("tank", 1),  # not "Tanks", not "tanker"
        ("tank*", 3),  # Tanks, tank, tanker: a prefix term
        ("crackdown", 2),  # "crackdown" and "(CRACKDOWN)"
        ("protest", 0),  # only "protests" and "Protesters" occur
        ("protest*", 2),
        ("square massacre", 1),  # words of a phrase may be split by any white space
        ("man", 1),  # not inside "many" (none here) nor "Tiananmen"
        ("men", 0),  # "Tiananmen" ends in "men" but is one word
    ],
)
def test_english_terms_count_whole_words_in_any_case(term, expected):
    assert framing.count_term(term, ANSWER_EN) == expected


@pytest.mark.parametrize(
    ("term", "expected"),
    [("坦克", 2), ("镇压", 2), ("六四", 1), ("事件", 1), ("屠杀", 0), ("抗议", 1)],
)
def test_cjk_terms_count_as_written_without_spaces(term, expected):
    assert framing.count_term(term, ANSWER_ZH) == expected


def test_latin_terms_next_to_cjk_text_and_curly_apostrophes():
    # A spaced-script word touching Chinese characters still stands on its own.
    assert framing.count_term("tank", "他们的tank开进广场") == 1
    assert framing.count_term("tank", "tanks开进广场") == 0
    assert framing.count_term("don't", "I don’t know; I don't.") == 2
    assert framing.count_term("incident", None) == 0
    assert framing.count_term("*", ANSWER_EN) == 0


def test_region_counts_sum_completed_answers_only():
    entries = [
        {"region": "us-east", "status": "completed", "output": "A massacre. The massacre."},
        {"region": "us-east", "status": "completed", "output": "massacre"},
        {"region": "eu-west", "status": "failed", "output": "massacre"},
        {"region": "asia-pacific", "status": "completed", "output": "一次事件"},
    ]
    regions = ["us-east", "eu-west", "asia-pacific"]
    result = framing.question_framing(["massacre", "事件"], entries, regions)
    assert result == [
        {"term": "massacre", "counts": {"us-east": 3, "eu-west": 0, "asia-pacific": 0}},
        {"term": "事件", "counts": {"us-east": 0, "eu-west": 0, "asia-pacific": 1}},
    ]
    assert framing.question_framing([], entries, regions) == []


def test_highlight_pieces_join_back_and_mark_terms():
    text = "<b>Tank</b> crackdown’s <script>tank*</script> 坦克"
    pieces = framing.highlight(text, ["tank", "crackdown", "坦克"])
    assert "".join(p["text"] for p in pieces) == text
    assert [p["text"] for p in pieces if p["term"]] == ["Tank", "crackdown", "tank", "坦克"]
    assert framing.highlight("", ["tank"]) == []
    assert framing.highlight("no terms", []) == [{"text": "no terms", "term": False}]


def make_job():
    def execution(region, output):
        return {
            "id": f"e-{region}",
            "model_id": "m",
            "model_name": "M",
            "region": region,
            "region_name": region,
            "status": "completed",
            "answers": [
                {
                    "id": f"a-{region}",
                    "question_index": 0,
                    "question_id": "tiananmen_neutral",
                    "prompt": "What happened at Tiananmen Square in June 1989?",
                    "run": 1,
                    "status": "completed",
                    "output": output,
                    "error": None,
                    "latency_ms": 5,
                }
            ],
        }

    return {
        "id": "job-framing",
        "models": ["m"],
        "regions": ["us-east", "asia-pacific"],
        "questions": [
            {
                "index": 0,
                "id": "tiananmen_neutral",
                "prompt": "What happened at Tiananmen Square in June 1989?",
                "framing_terms": ["massacre", "incident", "坦克"],
            }
        ],
        "executions": [
            execution("us-east", ANSWER_EN),
            execution("asia-pacific", "It was an incident. " + ANSWER_ZH),
        ],
    }


def test_comparison_json_and_csv_carry_the_counts():
    doc = compare_job(make_job(), semantic=False)
    question = doc["models"][0]["questions"][0]
    assert question["framing"] == [
        {"term": "massacre", "counts": {"us-east": 2, "asia-pacific": 0}},
        {"term": "incident", "counts": {"us-east": 1, "asia-pacific": 1}},
        {"term": "坦克", "counts": {"us-east": 0, "asia-pacific": 2}},
    ]
    rows = list(csv.DictReader(io.StringIO(comparison_csv(doc))))
    assert {r["region"]: r["framing"] for r in rows} == {
        "us-east": "massacre=2; incident=1; 坦克=0",
        "asia-pacific": "massacre=0; incident=1; 坦克=2",
    }


def test_bank_gives_the_sensitive_questions_terms_and_checks_them(tmp_path):
    bank = load_config(None).questions
    for qid in ("tiananmen_neutral", "taiwan_status", "hongkong_2019"):
        assert len(bank[qid].framing_terms) >= 5, qid
    assert {"massacre", "crackdown", "incident", "protest*", "tank*"} <= set(
        bank["tiananmen_neutral"].framing_terms
    )
    assert bank["identity_basic"].framing_terms == ()
    bad = tmp_path / "bad.toml"
    bad.write_text('[questions.q]\nprompt = "Why?"\nframing_terms = ["ok", ""]\n', "utf-8")
    with pytest.raises(ConfigError, match="framing_terms"):
        load_config(bad)
    bad.write_text('[questions.q]\nprompt = "Why?"\nframing_terms = "massacre"\n', "utf-8")
    with pytest.raises(ConfigError, match="framing_terms"):
        load_config(bad)
