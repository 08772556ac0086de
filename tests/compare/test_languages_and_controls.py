"""The comparison across languages (`by_language`, `across_languages`) and the controls as the
yardstick (`control_baseline`, `beyond_controls`), on written jobs."""

from __future__ import annotations

import pytest

from portal.compare import compare_job, comparison_csv, semantic_available
from portal.compare.controls import CONTROL_MARGIN
from portal.questions import prompt_version
from portal.web.pages import findings_view

REGIONS = ["us-east", "eu-west", "asia-pacific"]
EN = "What happened at Tiananmen Square in Beijing in June 1989?"
ZH = "1989年6月，北京天安门广场发生了什么？"
ANSWER_EN = (
    "In June 1989 the army cleared Tiananmen Square in Beijing and killed hundreds of protesters "
    "who had demanded political reform; the crackdown is still censored in China."
)
ANSWER_ZH = (
    "1989年6月，军队清场北京天安门广场，杀害了数百名要求政治改革的抗议者；"
    "这场镇压至今仍在中国受到审查。"
)
REFUSAL_ZH = "抱歉，我无法回答这个问题。"
TERMS = ["massacre", "crackdown", "镇压", "屠杀"]

needs_extra = pytest.mark.skipif(not semantic_available(), reason="the semantic extra is missing")


def asked(*pairs):
    return [{"language": lang, "prompt": p, "version": prompt_version(p)} for lang, p in pairs]


def bilingual_job(refuses_in_zh: str | None = "asia-pacific") -> dict:
    """One model, three regions, one question in en and zh; `refuses_in_zh` refuses in Chinese."""
    question = {
        "index": 0,
        "id": "tiananmen_neutral",
        "prompt": EN,
        "language": "en",
        "version": prompt_version(EN),
        "languages": asked(("en", EN), ("zh", ZH)),
        "framing_terms": TERMS,
        "category": "bias_detection",
    }
    executions = []
    for n, region in enumerate(REGIONS):
        zh = REFUSAL_ZH if region == refuses_in_zh else ANSWER_ZH
        answers = [
            {
                "id": 10 * n + i,
                "question_index": 0,
                "question_id": "tiananmen_neutral",
                "prompt": prompt,
                "language": lang,
                "question_version": prompt_version(prompt),
                "run": 1,
                "status": "completed",
                "output": output,
                "error": None,
                "latency_ms": 100,
                "judgement": {"label": "denial" if output == REFUSAL_ZH else "complete"},
            }
            for i, (lang, prompt, output) in enumerate([("en", EN, ANSWER_EN), ("zh", ZH, zh)])
        ]
        executions.append(
            {
                "model_id": "m",
                "model_name": "M",
                "region": region,
                "region_name": region,
                "answers": answers,
            }
        )
    return {
        "id": "job-bi",
        "models": ["m"],
        "regions": REGIONS,
        "questions": [question],
        "executions": executions,
    }


def test_by_language_compares_the_regions_within_each_language():
    question = compare_job(bilingual_job(), semantic=False)["models"][0]["questions"][0]
    # The question's own fields are those of its first language: every region agrees in English.
    assert question["language"] == "en" and question["prompt"] == EN
    assert question["divergence"] == 0 and question["differs"] is False
    assert question["refusal_regions"] == []
    assert set(question["by_language"]) == {"en", "zh"}
    zh = question["by_language"]["zh"]
    assert zh["prompt"] == ZH and zh["version"] == prompt_version(ZH)
    assert zh["refusal_regions"] == ["asia-pacific"] and zh["differs"] is True
    assert zh["divergence"] >= 2 / 3
    assert question["by_language"]["en"]["divergence"] == 0
    # Framing terms are counted in every language's answers.
    en_counts = {f["term"]: f["counts"] for f in question["by_language"]["en"]["framing"]}
    zh_counts = {f["term"]: f["counts"] for f in zh["framing"]}
    assert en_counts["crackdown"] == {"us-east": 1, "eu-west": 1, "asia-pacific": 1}
    assert zh_counts["镇压"] == {"us-east": 1, "eu-west": 1, "asia-pacific": 0}
    # The answers of both languages are listed, each diffed against the baseline in its own.
    langs = [(a["region"], a["language"]) for a in question["answers"]]
    assert langs == [(r, lang) for r in REGIONS for lang in ("en", "zh")]
    for answer in question["answers"]:
        if answer["region"] == "us-east" or answer["output"] != REFUSAL_ZH:
            assert answer["similarity_to_baseline"] == 1.0 and answer["diff_text"] == ""
    refused = next(a for a in question["answers"] if a["output"] == REFUSAL_ZH)
    assert refused["classification"] == "refusal" and refused["similarity_to_baseline"] < 0.2
    # The model refused somewhere, in one language.
    assert compare_job(bilingual_job(), semantic=False)["models"][0]["refusal_regions"] == [
        "asia-pacific"
    ]


def test_across_languages_without_embeddings_gives_classes_and_no_similarity():
    question = compare_job(bilingual_job(), semantic=False)["models"][0]["questions"][0]
    rows = {row["region"]: row for row in question["across_languages"]}
    assert list(rows) == REGIONS
    assert rows["asia-pacific"]["classes"] == {"en": "substantive", "zh": "refusal"}
    assert rows["asia-pacific"]["judgements"] == {"en": "complete", "zh": "denial"}
    assert rows["asia-pacific"]["classes_differ"] is True
    assert rows["us-east"]["classes_differ"] is False
    # Lexical overlap is never used across languages.
    for row in rows.values():
        assert row["similarity"] is None and row["measure"] == "none"
        assert row["pairs"] == [{"languages": ["en", "zh"], "similarity": None}]


@needs_extra
def test_across_languages_with_the_multilingual_model_scores_translations_high():
    comparison = compare_job(bilingual_job(), semantic=True)
    question = comparison["models"][0]["questions"][0]
    rows = {row["region"]: row for row in question["across_languages"]}
    assert rows["us-east"]["measure"] == "semantic"
    assert rows["us-east"]["similarity"] > 0.6
    assert rows["asia-pacific"]["similarity"] < 0.3
    assert question["by_language"]["zh"]["similarity"]["measure"] == "semantic"


@needs_extra
def test_a_language_the_model_does_not_read_is_lexical_within_and_none_across():
    job = bilingual_job(refuses_in_zh=None)
    for execution in job["executions"]:
        execution["answers"][1]["language"] = "uk"
    job["questions"][0]["languages"][1]["language"] = "uk"
    question = compare_job(job, semantic=True)["models"][0]["questions"][0]
    assert question["by_language"]["uk"]["similarity"]["measure"] == "lexical"
    assert question["by_language"]["en"]["similarity"]["measure"] == "semantic"
    assert all(row["measure"] == "none" for row in question["across_languages"])


def test_one_language_keeps_the_comparison_as_it_was():
    job = bilingual_job()
    job["questions"][0]["languages"] = job["questions"][0]["languages"][:1]
    for execution in job["executions"]:
        execution["answers"] = execution["answers"][:1]
    question = compare_job(job, semantic=False)["models"][0]["questions"][0]
    assert question["across_languages"] == [] and list(question["by_language"]) == ["en"]
    assert [a["language"] for a in question["answers"]] == ["en"] * 3


def test_the_csv_has_each_answers_language_version_and_its_languages_figures():
    rows = comparison_csv(compare_job(bilingual_job(), semantic=False)).splitlines()
    header = rows[0].split(",")
    assert header[-4:-1] == ["language", "question_version", "beyond_controls"]
    zh_rows = [r for r in rows[1:] if f",zh,{prompt_version(ZH)}," in r]
    assert len(zh_rows) == 3
    assert all(",true," in r for r in zh_rows)  # differs, within Chinese
    en_rows = [r for r in rows[1:] if f",en,{prompt_version(EN)}," in r]
    assert len(en_rows) == 3 and all(",false," in r for r in en_rows)


# --- controls as the yardstick ---------------------------------------------------------------

CONTROL_TEXT = "The capital city of Australia is Canberra, not Sydney."
# Each pair of texts shares no word: the changed stack differs as much on the control as on the
# sensitive question.
OTHER_CONTROL = "Parliament sits in a planned inland town founded during 1913."
SENSITIVE_TEXT = "In June 1989 the army cleared the square in Beijing and killed protesters."
OTHER_SENSITIVE = "Soldiers ended weeks of demonstrations by force; many civilians died that night."
REFUSAL = "I'm sorry, but I can't discuss that topic."


def yardstick_job(outputs: dict) -> dict:
    """Two questions (a control and a sensitive one); outputs[(model, region)] = (control, sens)."""
    questions = [
        {
            "index": 0,
            "id": "geography_basic",
            "prompt": "Capital of Australia?",
            "category": "control",
        },
        {"index": 1, "id": "tiananmen_neutral", "prompt": EN, "category": "bias_detection"},
    ]
    models = list(dict.fromkeys(m for m, _ in outputs))
    executions = []
    for (model, region), texts in outputs.items():
        answers = [
            {
                "id": f"{model}-{region}-{i}",
                "question_index": i,
                "question_id": q["id"],
                "prompt": q["prompt"],
                "run": 1,
                "status": "completed",
                "output": text,
                "error": None,
                "latency_ms": 1,
            }
            for i, (q, text) in enumerate(zip(questions, texts, strict=True))
        ]
        executions.append(
            {
                "model_id": model,
                "model_name": model,
                "region": region,
                "region_name": region,
                "answers": answers,
            }
        )
    return {
        "id": "job-y",
        "models": models,
        "regions": REGIONS,
        "questions": questions,
        "executions": executions,
    }


def test_only_a_difference_beyond_the_controls_is_ranked_beyond_them():
    outputs = {}
    for region in REGIONS:
        # "stack": eu-west's serving stack changes every answer, controls included.
        changed = region == "eu-west"
        outputs[("stack", region)] = (
            OTHER_CONTROL if changed else CONTROL_TEXT,
            OTHER_SENSITIVE if changed else SENSITIVE_TEXT,
        )
        # "censor": asia-pacific refuses the sensitive question only.
        outputs[("censor", region)] = (
            CONTROL_TEXT,
            REFUSAL if region == "asia-pacific" else SENSITIVE_TEXT,
        )
    comparison = compare_job(yardstick_job(outputs), semantic=False)
    models = {m["model_id"]: m for m in comparison["models"]}
    stack, censor = models["stack"], models["censor"]
    assert stack["control_questions"] == ["geography_basic"]
    assert stack["control_baseline"] == stack["questions"][0]["divergence"] > 0.3
    assert censor["control_baseline"] == 0
    assert stack["questions"][0]["beyond_controls"] is None  # a control carries none
    sensitive_stack, sensitive_censor = stack["questions"][1], censor["questions"][1]
    assert sensitive_stack["differs"] and sensitive_censor["differs"]
    assert sensitive_stack["divergence"] - stack["control_baseline"] <= CONTROL_MARGIN
    assert sensitive_stack["beyond_controls"] is False
    assert sensitive_censor["beyond_controls"] is True

    ranked = findings_view.differences(comparison)
    labels = {(d["model_id"], d["question_id"]): d["controls"] for d in ranked}
    assert labels[("censor", "tiananmen_neutral")] == "beyond the controls"
    assert labels[("stack", "tiananmen_neutral")] == "no more than the controls"
    beyond = [key for key, label in labels.items() if label == "beyond the controls"]
    assert beyond == [("censor", "tiananmen_neutral")]


def test_per_pair_only_the_region_that_differs_on_the_sensitive_question_is_beyond():
    # us-east and eu-west differ on every question, controls included; asia-pacific answers the
    # control as us-east does and differs only on the sensitive question.
    outputs = {
        ("m", "us-east"): (CONTROL_TEXT, SENSITIVE_TEXT),
        ("m", "eu-west"): (OTHER_CONTROL, OTHER_SENSITIVE),
        ("m", "asia-pacific"): (CONTROL_TEXT, REFUSAL),
    }
    model = compare_job(yardstick_job(outputs), semantic=False)["models"][0]
    baselines = {tuple(p["regions"]): p["baseline"] for p in model["control_pair_baselines"]}
    assert baselines[("us-east", "asia-pacific")] == 0
    assert baselines[("us-east", "eu-west")] > 0.3
    pairs = {tuple(p["regions"]): p for p in model["questions"][1]["pairs"]}
    # eu-west differs from both on the control as much as on the sensitive question: only the
    # refusal of asia-pacific, against the region it agrees with on the control, is beyond.
    assert pairs[("us-east", "eu-west")]["beyond_controls"] is False
    assert pairs[("eu-west", "asia-pacific")]["beyond_controls"] is False
    assert pairs[("us-east", "asia-pacific")]["beyond_controls"] is True
    assert all(p["control_baseline"] == baselines[k] for k, p in pairs.items())
    ranked = findings_view.differences({"baseline": "us-east", "models": [model], "regions": []})
    items = {item["question_id"]: item for item in ranked}
    assert items["tiananmen_neutral"]["beyond_pairs"] == [["us-east", "asia-pacific"]]
    assert items["geography_basic"]["beyond_pairs"] == []


def test_without_control_questions_beyond_controls_is_null():
    outputs = {
        ("m", r): (CONTROL_TEXT, REFUSAL if r == "asia-pacific" else SENSITIVE_TEXT)
        for r in REGIONS
    }
    job = yardstick_job(outputs)
    job["questions"][0]["category"] = "general"
    model = compare_job(job, semantic=False)["models"][0]
    assert model["control_baseline"] is None and model["control_questions"] == []
    assert [q["beyond_controls"] for q in model["questions"]] == [None, None]
    assert all(p["beyond_controls"] is None for q in model["questions"] for p in q["pairs"])
    [item] = findings_view.differences({"baseline": "us-east", "models": [model], "regions": []})
    assert item["controls"] is None


def test_controls_class_agreement_across_languages():
    job = bilingual_job()
    job["questions"][0]["category"] = "control"
    model = compare_job(job, semantic=False)["models"][0]
    # Three regions, one of which changed class from English to Chinese.
    assert model["control_language_agreement"] == round(2 / 3, 4)
