"""Cross-region comparison: similarity, diffs, divergence, noise between repeats, CSV."""

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.compare import (
    CLASSES,
    CSV_COLUMNS,
    DIFFERS_THRESHOLD,
    compare_job,
    comparison_csv,
    edit_similarity,
    semantic_available,
    token_similarity,
    unified_diff,
    word_diff,
)
from portal.compare.rules import RULES
from tests.support.written_jobs import (
    CONTROL,
    QUESTIONS,
    REFUSALS,
    REGIONS,
    SENSITIVE,
    answer,
    censored_job,
    make_job,
)


@pytest.fixture
def comparison():
    return compare_job(censored_job(), semantic=False)


def question(comparison, index, model=0):
    return comparison["models"][model]["questions"][index]


def test_control_questions_are_identical_everywhere(comparison):
    for index in CONTROL:
        q = question(comparison, index)
        assert q["divergence"] == 0
        assert q["differs"] is False
        assert q["refusal_regions"] == []
        assert q["between_region_spread"] == 0
        assert q["similarity"]["matrix"] == [[1.0] * 3] * 3
        for a in q["answers"]:
            assert a["classification"] == "substantive"
            assert a["similarity_to_baseline"] == 1.0
            assert a["diff_text"] == ""
            assert [s["op"] for s in a["diff"]] == ["equal"]


def test_refusals_are_flagged_exactly_where_they_happen(comparison):
    model = comparison["models"][0]
    assert model["refusal_regions"] == ["asia-pacific"]
    for index in SENSITIVE:
        q = question(comparison, index)
        assert q["refusal_regions"] == ["asia-pacific"]
        assert q["differs"] is True
        assert q["divergence"] >= 0.6
        classes = {a["region"]: a["classification"] for a in q["answers"]}
        assert classes == {
            "us-east": "substantive",
            "eu-west": "substantive",
            "asia-pacific": "refusal",
        }
        matrix = q["similarity"]["matrix"]
        assert matrix[0][1] == 1.0
        assert matrix[0][2] < 0.2
        refused = q["answers"][2]
        assert refused["diff_text"].startswith("[-")
        assert {s["op"] for s in refused["diff"]} == {"removed", "added"}
    assert model["questions_differing"] == len(SENSITIVE)
    assert 0.25 < model["divergence"] < 0.5


def test_shape_names_measure_baseline_and_orders(comparison):
    assert comparison["baseline"] == "us-east"
    assert comparison["measure"] == "lexical"
    assert comparison["differs_threshold"] == DIFFERS_THRESHOLD
    assert [r["id"] for r in comparison["regions"]] == REGIONS
    q = question(comparison, 2)
    assert q["similarity"]["regions"] == REGIONS
    assert q["similarity"]["measure"] == "lexical"
    assert [a["region"] for a in q["answers"]] == REGIONS
    assert q["question_id"] == "tiananmen_neutral"
    assert q["prompt"] == QUESTIONS[2]["prompt"]
    assert q["within_region_spread"] is None


def test_order_follows_the_spec_not_the_executions():
    job = censored_job(models=("b-model", "a-model"))
    job["executions"].reverse()
    job["regions"] = ["eu-west", "asia-pacific", "us-east"]
    result = compare_job(job, semantic=False)
    assert [m["model_id"] for m in result["models"]] == ["b-model", "a-model"]
    assert result["baseline"] == "eu-west"
    q = result["models"][0]["questions"][2]
    assert [a["region"] for a in q["answers"]] == ["eu-west", "asia-pacific", "us-east"]
    assert q["refusal_regions"] == ["asia-pacific"]


def test_baseline_is_selectable_and_checked():
    result = compare_job(censored_job(), baseline="asia-pacific", semantic=False)
    q = result["models"][0]["questions"][2]
    by_region = {a["region"]: a for a in q["answers"]}
    assert by_region["asia-pacific"]["similarity_to_baseline"] == 1.0
    assert by_region["asia-pacific"]["diff_text"] == ""
    assert by_region["us-east"]["similarity_to_baseline"] < 0.2
    with pytest.raises(ValueError, match="mars"):
        compare_job(censored_job(), baseline="mars", semantic=False)


def test_failed_answers_are_reported_but_not_compared():
    moderated = "content_filter: I'm sorry, but I can't discuss that topic."
    outputs = {
        ("m", "us-east"): [answer(2, SENSITIVE[2])],
        ("m", "eu-west"): [answer(2, SENSITIVE[2])],
        ("m", "asia-pacific"): [answer(2, None, status="failed", error=moderated)],
    }
    result = compare_job(make_job(outputs, models=("m",)), semantic=False)
    q = result["models"][0]["questions"][2]
    failed = q["answers"][2]
    assert failed["classification"] == "technical_failure"
    assert failed["similarity_to_baseline"] is None and failed["diff"] is None
    assert failed["error"] == moderated
    assert q["refusal_regions"] == []
    assert q["regions"][2]["failed"] == 1 and q["regions"][2]["answered"] == 0
    assert q["similarity"]["matrix"][2] == [None, None, None]
    assert q["divergence"] == 0 and q["differs"] is False


def test_questions_with_one_answering_region_have_no_divergence():
    outputs = {
        ("m", "us-east"): [answer(1, CONTROL[1])],
        ("m", "eu-west"): [answer(1, None, status="queued")],
    }
    result = compare_job(make_job(outputs, models=("m",)), semantic=False)
    q = result["models"][0]["questions"][1]
    assert q["divergence"] is None and q["differs"] is False
    assert q["regions"][1]["unanswered"] == 1
    assert q["answers"][1]["classification"] is None
    # Questions nobody answered do not drag the model's score either way.
    assert result["models"][0]["divergence"] is None


def noisy_runs(index, texts):
    return [answer(index, text, run=run) for run, text in enumerate(texts, start=1)]


def test_sampling_noise_is_not_read_as_a_regional_difference():
    # Each region's repeats vary at least as much as the regions vary from one another.
    variants = [
        "Canberra is the capital city of Australia.",
        "The capital of Australia is Canberra, chosen in 1908.",
        "Australia's capital is Canberra, a planned city.",
    ]
    outputs = {
        ("m", "us-east"): noisy_runs(1, variants),
        ("m", "eu-west"): noisy_runs(1, variants[1:] + variants[:1]),
        ("m", "asia-pacific"): noisy_runs(1, variants[2:] + variants[:2]),
    }
    q = compare_job(make_job(outputs, models=("m",)), semantic=False)["models"][0]["questions"][1]
    assert q["between_region_spread"] > DIFFERS_THRESHOLD
    assert q["within_region_spread"] >= q["between_region_spread"]
    assert q["differs"] is False
    assert [a["run"] for a in q["answers"][:3]] == [1, 2, 3]


def test_a_region_that_differs_beyond_its_noise_is_flagged():
    stable = ["The capital city of Australia is Canberra."] * 3
    outputs = {
        ("m", "us-east"): noisy_runs(1, stable),
        ("m", "eu-west"): noisy_runs(1, stable),
        ("m", "asia-pacific"): noisy_runs(
            1, ["Sydney is the largest city and a major port."] * 2 + ["Sydney is big."]
        ),
    }
    q = compare_job(make_job(outputs, models=("m",)), semantic=False)["models"][0]["questions"][1]
    assert q["within_region_spread"] < 0.2
    assert q["between_region_spread"] - q["within_region_spread"] > DIFFERS_THRESHOLD
    assert q["differs"] is True
    assert q["refusal_regions"] == []
    # Each repeat is compared with the baseline's repeat of the same number.
    assert q["answers"][1]["similarity_to_baseline"] == 1.0


def test_a_region_refusing_in_most_repeats_counts_as_refusing():
    outputs = {
        ("m", "us-east"): noisy_runs(2, [SENSITIVE[2]] * 3),
        ("m", "asia-pacific"): noisy_runs(2, [REFUSALS[2], REFUSALS[2], SENSITIVE[2]]),
    }
    job = make_job(outputs, models=("m",), regions=["us-east", "asia-pacific"])
    q = compare_job(job, semantic=False)["models"][0]["questions"][2]
    assert q["refusal_regions"] == ["asia-pacific"]
    assert q["class_disagreement"] == 1.0 and q["divergence"] == 1.0


def test_small_wording_changes_stay_below_the_threshold():
    outputs = {
        ("m", "us-east"): [answer(0, CONTROL[0])],
        ("m", "eu-west"): [answer(0, CONTROL[0].replace("small", "compact"))],
    }
    job = make_job(outputs, models=("m",), regions=["us-east", "eu-west"])
    q = compare_job(job, semantic=False)["models"][0]["questions"][0]
    assert 0 < q["divergence"] < DIFFERS_THRESHOLD
    assert q["differs"] is False
    assert q["answers"][1]["diff_text"] == (
        "I am a [-small-] {+compact+} language model trained to answer questions. "
        "I run on this machine."
    )


def test_default_measure_depends_on_the_extra():
    result = compare_job(censored_job())
    assert result["measure"] == ("semantic" if semantic_available() else "lexical")


def test_csv_has_one_row_per_answer(comparison):
    rows = list(csv.DictReader(io.StringIO(comparison_csv(comparison))))
    assert rows
    assert list(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 3 * len(QUESTIONS)
    refused = [r for r in rows if r["classification"] == "refusal"]
    assert {(r["region"], r["question_id"]) for r in refused} == {
        ("asia-pacific", "tiananmen_neutral"),
        ("asia-pacific", "taiwan_status"),
    }
    first = rows[0]
    assert first["measure"] == "lexical" and first["baseline"] == "us-east"
    assert first["similarity_to_baseline"] == "1.0" and first["differs"] == "false"
    assert first["output"] == CONTROL[0]


def test_csv_neutralizes_spreadsheet_formulas():
    outputs = {("m", "us-east"): [answer(1, '=HYPERLINK("http://x.invalid")')]}
    result = compare_job(make_job(outputs, models=("m",)), semantic=False)
    row = next(csv.DictReader(io.StringIO(comparison_csv(result))))
    assert row["output"] == '\'=HYPERLINK("http://x.invalid")'
    assert row["divergence"] == "" and row["region"] == "us-east"


def test_word_diff_spans_and_unified_text():
    spans = word_diff("the old words here", "the new words here and more")
    assert spans == [
        {"op": "equal", "text": "the "},
        {"op": "removed", "text": "old "},
        {"op": "added", "text": "new "},
        {"op": "equal", "text": "words here"},
        {"op": "added", "text": " and more"},
    ]
    assert unified_diff(spans) == "the [-old-] {+new+} words here {+and more+}"
    assert unified_diff(word_diff("same text", "same text")) == ""
    assert word_diff("", "") == []
    assert word_diff("", "new") == [{"op": "added", "text": "new"}]
    chinese = word_diff("抱歉，我无法回答", "抱歉，我可以回答")
    assert unified_diff(chinese) == "抱歉，我[-无法-] {+可以+}回答"


words = st.sampled_from(["a", "b", "c", "the", "Canberra", "城", "市", "."])
gaps = st.sampled_from([" ", "  ", "\n", " \n\t"])
texts = st.lists(st.tuples(gaps, words), max_size=12).map(
    lambda pairs: "".join(gap + word for gap, word in pairs)[1:]
)


@given(texts, texts)
def test_word_diff_rebuilds_both_texts(base, other):
    spans = word_diff(base, other)
    assert "".join(s["text"] for s in spans if s["op"] != "added") == base
    rebuilt = "".join(s["text"] for s in spans if s["op"] != "removed")
    assert rebuilt.split() == other.split()
    assert all(a["op"] != b["op"] for a, b in zip(spans, spans[1:], strict=False))


def levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@given(texts, texts)
def test_similarities_are_bounded_symmetric_and_exact_on_identity(a, b):
    for measure in (token_similarity, edit_similarity):
        value = measure(a, b)
        assert 0.0 <= value <= 1.0
        assert value == measure(b, a)
        assert measure(a, a) == 1.0
    wa, wb = (t.lower().replace(".", " ").split() for t in (a, b))
    if wa or wb:
        assert edit_similarity(a, b) == pytest.approx(
            1 - levenshtein(wa, wb) / max(len(wa), len(wb))
        )


def test_similarity_values():
    assert token_similarity("", "") == 1.0 and edit_similarity("", "") == 1.0
    assert token_similarity("Hello, World", "hello world") == 1.0
    assert token_similarity("a b c", "a b d") == 0.5
    assert edit_similarity("a b c", "a b d") == pytest.approx(2 / 3)
    assert edit_similarity("a b c", "") == 0.0
    assert token_similarity("天安门", "天安") == pytest.approx(2 / 3)
    long_a = " ".join(f"w{i}" for i in range(3000))
    long_b = " ".join(f"w{i}" for i in range(1, 3001))
    assert edit_similarity(long_a, long_b) == pytest.approx(1 - 2 / 3000)


def test_the_documentation_names_every_rule_class_and_column():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "comparison.md").read_text()
    for name in [r.name for r in RULES] + list(CLASSES) + CSV_COLUMNS:
        assert f"`{name}`" in doc, name
