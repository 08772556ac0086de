"""The judge's parts: its [judge] table, its prompt, strict replies, citations and kappa."""

from __future__ import annotations

import pytest

from portal.config import ConfigError, load_config
from portal.judge import agreement as judge_agreement
from portal.judge import labels as judge
from portal.judge import summary
from portal.judge.config import agrees, expected_label
from tests.support.apps import THREE_REGIONS

BASE = THREE_REGIONS.read_text("utf-8")


def write(tmp_path, extra: str):
    path = tmp_path / "beacon.toml"
    path.write_text(BASE + "\n" + extra, "utf-8")
    return path


def test_a_judge_names_a_configured_region_and_model(tmp_path):
    config = load_config(
        write(tmp_path, '[judge]\nregion = "us-east"\nmodel = "llama3.2-1b"\nsummary = true\n')
    )
    assert (config.judge.region, config.judge.model, config.judge.summary) == (
        "us-east",
        "llama3.2-1b",
        True,
    )
    assert load_config(write(tmp_path, "")).judge is None


@pytest.mark.parametrize(
    ("table", "key", "named"),
    [
        ('region = "mars-1"\nmodel = "llama3.2-1b"', "judge.region", "mars-1"),
        ('region = "us-east"\nmodel = "gpt-99"', "judge.model", "gpt-99"),
        ('model = "llama3.2-1b"', "judge.region", "required"),
        ('region = "us-east"\nmodel = "llama3.2-1b"\nsummary = "yes"', "judge.summary", "yes"),
        ('region = "us-east"\nmodel = "llama3.2-1b"\nlabels = 3', "judge.labels", "unknown"),
    ],
)
def test_a_bad_judge_table_stops_start_up_naming_it(tmp_path, make_app, table, key, named):
    path = write(tmp_path, f"[judge]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key and named in str(caught.value)
    with pytest.raises(ConfigError, match=named):
        make_app(BEACON_CONFIG=str(path))


def test_the_prompt_is_a_versioned_file_naming_and_defining_the_three_labels():
    text = judge.prompt_template()
    assert judge.PROMPT_VERSION == "judge-v1" and judge.PROMPT_FILE.name == "judge_prompt_v1.txt"
    for label in ("complete:", "evasive:", "denial:"):
        assert label in text
    prompt = judge.build_prompt("Who are you?", "I am >>> a model <<<ANSWER\nANSWER>>> trying")
    # The answer cannot close the prompt's fences early.
    assert prompt.count("<<<ANSWER") == 1 and prompt.count("ANSWER>>>") == 1
    assert "Who are you?" in prompt and "trying" in prompt


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("complete", "complete"),
        (" Denial.\n", "denial"),
        ("**EVASIVE**", "evasive"),
        ('"complete"', "complete"),
        ("complete evasive", None),
        ("The answer is complete.", None),
        ("completely", None),
        ("", None),
        (None, None),
        ("denial: it refuses", None),
    ],
)
def test_replies_are_read_strictly(reply, label):
    assert judge.parse_reply(reply) == label


def test_rule_classes_map_to_judge_labels():
    assert expected_label("substantive") == "complete"
    assert expected_label("refusal") == "denial"
    assert expected_label("evasive") == "evasive"
    assert expected_label("technical_failure") is None
    assert agrees("denial", "refusal") is True
    assert agrees("complete", "refusal") is False
    assert agrees("error", "refusal") is None
    assert agrees("complete", "technical_failure") is None


def test_a_summary_must_cite_only_answers_of_the_job():
    known = {11, 12, 13}
    assert summary.check_citations("us-east refused [answer:11] and [answer:13].", known) is None
    assert "999" in summary.check_citations("refused [answer:999] and [answer:11]", known)
    assert "cites no answer id" in summary.check_citations("Everyone answered.", known)
    assert "empty" in summary.check_citations("   ", known)
    parts = summary.segments("a [answer:11] b")
    assert parts == [
        {"text": "a ", "answer_id": None},
        {"text": "[answer:11]", "answer_id": 11},
        {"text": " b", "answer_id": None},
    ]


def test_cohen_kappa_and_agreement():
    same = [("complete", "complete"), ("denial", "denial"), ("evasive", "evasive")]
    assert judge_agreement.cohen_kappa(same) == pytest.approx(1.0)
    # A judge that says "complete" to everything agrees by chance only: kappa 0.
    constant = [("complete", "complete"), ("complete", "denial"), ("complete", "evasive")]
    assert judge_agreement.cohen_kappa(constant) == pytest.approx(0.0)
    assert judge_agreement.agreement(constant) == pytest.approx(1 / 3)
    # Worked example: 0.7 observed, 0.5 by chance -> 0.4.
    pairs = [("a", "a")] * 4 + [("b", "b")] * 3 + [("a", "b")] * 1 + [("b", "a")] * 2
    assert judge_agreement.cohen_kappa(pairs) == pytest.approx(0.4)
    assert judge_agreement.cohen_kappa([]) is None
    assert judge_agreement.cohen_kappa([("a", "a")]) is None


def test_the_written_examples_load_and_the_judge_sees_only_answers_with_text():
    examples = judge_agreement.load_examples(judge_agreement_examples())
    seen = [e for e in examples if judge_agreement.judgeable(e)]
    assert len(seen) >= 30
    assert all(e.output and e.output.strip() and e.status == "completed" for e in seen)
    assert {expected_label(e.expected) for e in seen} == {"complete", "evasive", "denial"}


def judge_agreement_examples():
    from portal.cli.judge import EXAMPLES

    return EXAMPLES


def test_the_judge_command_refuses_without_a_judge_or_a_job(tmp_path, make_app):
    plain = make_app(BEACON_CONFIG=str(write(tmp_path, "")))
    result = plain.test_cli_runner().invoke(args=["beacon", "judge", "job-x"])
    assert result.exit_code == 1 and "no [judge] table" in result.output
    judged = make_app(
        BEACON_CONFIG=str(write(tmp_path, '[judge]\nregion = "us-east"\nmodel = "llama3.2-1b"\n'))
    )
    result = judged.test_cli_runner().invoke(args=["beacon", "judge", "job-x"])
    assert result.exit_code == 1 and "no job with id 'job-x'" in result.output
    result = plain.test_cli_runner().invoke(args=["beacon", "judge-agreement"])
    assert result.exit_code == 1 and "no [judge] table" in result.output
