"""The findings section's pieces on written comparisons: shading, who stands apart, the ranked
differences, the charts' numbers and escaping, and the one line of a job without differences."""

from __future__ import annotations

import re

from flask import render_template

from portal.compare import compare_job
from portal.web.pages import charts
from portal.web.pages import findings_view as findings

REGIONS = ["us-east", "eu-west", "asia-pacific"]
SAME = "The capital city of Australia is Canberra, a planned city chosen in 1908."


def job(outputs: dict[tuple[str, str], str], models=("m1", "m2")) -> dict:
    """A serialized job with one question; outputs maps (model, region) to the answer text."""
    return {
        "id": "job-unit",
        "models": list(models),
        "regions": REGIONS,
        "questions": [{"index": 0, "id": "geography_basic", "prompt": "Capital of Australia?"}],
        "executions": [
            {
                "id": f"{m}-{r}",
                "model_id": m,
                "model_name": m.upper(),
                "model_icon": "*",
                "region": r,
                "region_name": r,
                "status": "completed",
                "answers": [
                    {
                        "id": f"a-{m}-{r}",
                        "question_index": 0,
                        "question_id": "geography_basic",
                        "prompt": "Capital of Australia?",
                        "run": 1,
                        "status": "completed",
                        "output": outputs.get((m, r), SAME),
                        "error": None,
                        "latency_ms": 3,
                    }
                ],
            }
            for m in models
            for r in REGIONS
        ],
    }


def test_buckets_and_word_counts():
    assert [findings.bucket(v) for v in (None, 0.0, 0.09, 0.11, 0.5, 0.67, 1.0)] == [
        "div-none",
        "div-0",
        "div-0",
        "div-1",
        "div-2",
        "div-3",
        "div-5",
    ]
    assert findings.word_count("two words") == 2
    assert findings.word_count("抱歉，我无法回答") == 7


def test_ranked_differences_quote_the_differing_words():
    drift = "The capital of Australia is Sydney, the largest city, famous for its harbour."
    refusal = "I'm sorry, but I can't discuss that topic."
    doc = compare_job(
        job({("m1", "eu-west"): drift, ("m2", "asia-pacific"): refusal}), semantic=False
    )
    ranked = findings.differences(doc)
    assert [(d["model_id"], d["apart"]) for d in ranked] == [
        ("m2", ["asia-pacific"]),
        ("m1", ["eu-west"]),
    ]
    assert ranked[0]["divergence"] >= ranked[1]["divergence"]
    assert ranked[0]["others"] == ["us-east", "eu-west"] and ranked[0]["refused"] == [
        "asia-pacific"
    ]
    quote = ranked[1]["quote"]
    assert quote["region"] == "eu-west" and "Sydney" in quote["words"]
    assert "Canberra" in quote["baseline_words"] and "Australia" not in quote["words"]
    cells = findings.overview(doc)["rows"][1]["cells"]
    assert cells[0]["marked"] and cells[0]["refused"] == ["asia-pacific"]
    assert findings.overview(doc)["rows"][0]["cells"][0]["apart"] == ["eu-west"]
    assert not findings.overview(doc)["rows"][0]["cells"][0]["marked"]


def test_charts_print_numbers_and_escape_labels():
    figure = charts.bar_chart(
        "c", "T <x>", [("<g>", [("a&b", 2), ("c", 0)]), ("h", [("a&b", 1.5), ("c", 3)])], digits=1
    )
    html = str(figure)
    assert "<g>" not in html and "&lt;g&gt;" in html and "a&amp;b" in html
    assert re.findall(r'data-value="([^"]+)"', html) == ["2.0", "0.0", "1.5", "3.0"]
    assert html.count("<rect") == 4 and 'width="0"' in html
    assert "<table>" in html and "T &lt;x&gt;" in html


def test_a_job_without_differences_says_so_in_one_line(app):
    doc = compare_job(job({}), semantic=False)
    found = findings.job_findings(doc)
    assert found["differences"] == [] and found["more_differences"] == 0
    with app.test_request_context("/"):
        html = render_template("partials/findings.html", comparison=doc, job={"id": "job-unit"})
    section = re.search(r'<section id="differences".*?</section>', html, re.S).group(0)
    assert re.findall(r"<p[^>]*>(.*?)</p>", section) == [
        "No differences: in every model, every region answered every question alike."
    ]
    assert html.count('class="ov-cell div-0"') == 2
    assert findings.job_findings(None) is None
