"""Issue 20, item 7: the job form refuses a spec over the answer limit next to its field, as
the API refuses it with 400 `too_many_answers`; it never answers 500."""

from __future__ import annotations

from tests.support.apps import THREE_REGIONS

MODELS = ["llama3.2-1b", "mistral-7b", "qwen2.5-1.5b"]
REGIONS = ["us-east", "eu-west", "asia-pacific"]
# 3 models x 3 regions x 112 questions x 10 runs = 10,080 answers: just over the 10,000 limit.
QUESTION_COUNT = 112
RUNS = 10


def many_questions_config(tmp_path):
    """The three-regions configuration with a bank big enough to go over the answer limit."""
    lines = [THREE_REGIONS.read_text("utf-8")]
    for n in range(QUESTION_COUNT):
        lines += [
            f"[questions.q{n:03d}]",
            'category = "control"',
            f'prompt = "Question number {n} of a long list?"',
            "",
        ]
    path = tmp_path / "many-questions.toml"
    path.write_text("\n".join(lines), "utf-8")
    return path


def test_a_form_over_the_answer_limit_is_refused_on_the_form_not_with_500(make_app, tmp_path):
    app = make_app(BEACON_CONFIG=str(many_questions_config(tmp_path)))
    client = app.test_client()
    form = {
        "questions": [f"q{n:03d}" for n in range(QUESTION_COUNT)],
        "models": MODELS,
        "regions": REGIONS,
        "runs": str(RUNS),
    }
    response = client.post("/jobs/new", data=form)
    page = response.get_data(as_text=True)
    # Today pages.create_job reads `exc.status` on the DomainError intake raised: 500.
    assert response.status_code == 422, (response.status_code, page[:500])
    # The refusal is shown on the form, in the intake's words, next to the runs field.
    assert "10080 answers requested; the limit is 10000" in page, page[:2000]
    assert client.get("/api/v1/jobs").json["items"] == []
    # The same form under the limit (1,008 answers) goes through.
    assert client.post("/jobs/new", data=dict(form, runs="1")).status_code == 303
