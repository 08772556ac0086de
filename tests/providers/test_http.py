"""Provider calls against real loopback HTTP servers on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC

import pytest
import requests

from portal.config import Model, Region
from portal.providers import ProviderError, call
from tests.support.live_server import wait_until
from tests.support.loopback import LoopbackProvider

MODEL = Model(id="mistral-7b", name="Mistral 7B", provider_model="mistral:7b")
KINDS = ["openai", "ollama"]


@pytest.fixture
def server():
    with LoopbackProvider(label="eu-west") as provider:
        yield provider


def region_for(server: LoopbackProvider, kind: str, **extra) -> Region:
    base_url = server.base_url_openai if kind == "openai" else server.base_url_ollama
    return Region(id="eu-west", name="EU West", provider=kind, base_url=base_url, **extra)


def endpoint(server: LoopbackProvider, kind: str) -> str:
    if kind == "openai":
        return f"{server.base_url_openai}/chat/completions"
    return f"{server.base_url_ollama}/api/chat"


def failure(region: Region, prompt: str = "Who are you?", timeout_s: float = 5) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(region, MODEL, prompt, timeout_s=timeout_s)
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_openai_answer_carries_text_tokens_and_sends_provider_model(server, monkeypatch):
    monkeypatch.setenv("EU_WEST_KEY", "s3cret")
    region = region_for(server, "openai", api_key_env="EU_WEST_KEY")
    result = call(region, MODEL, "What is 2 + 2?", timeout_s=5, max_tokens=32, temperature=0.5)
    assert result.text == "[eu-west] mistral:7b answers: What is 2 + 2?"
    assert (result.provider, result.provider_model) == ("openai", "mistral:7b")
    assert (result.prompt_tokens, result.completion_tokens) == (5, 8)
    assert result.started_at.tzinfo == UTC and result.finished_at >= result.started_at
    seen = server.calls[0]
    assert seen["authorization"] == "Bearer s3cret"
    assert seen["payload"]["model"] == "mistral:7b"
    assert seen["payload"]["messages"] == [{"role": "user", "content": "What is 2 + 2?"}]
    assert (seen["payload"]["max_tokens"], seen["payload"]["temperature"]) == (32, 0.5)


def test_ollama_answer_carries_text_tokens_and_asks_for_one_body(server, monkeypatch):
    monkeypatch.setenv("EU_WEST_KEY", "t0ken")
    region = region_for(server, "ollama", api_key_env="EU_WEST_KEY")
    result = call(region, MODEL, "Name a river.", timeout_s=5, max_tokens=16)
    assert result.text == "[eu-west] mistral:7b answers: Name a river."
    assert (result.provider, result.provider_model) == ("ollama", "mistral:7b")
    assert (result.prompt_tokens, result.completion_tokens) == (3, 6)
    seen = server.calls[0]
    assert seen["kind"] == "ollama" and seen["authorization"] == "Bearer t0ken"
    assert seen["payload"]["stream"] is False
    assert seen["payload"]["options"] == {"temperature": 0.0, "num_predict": 16}


@pytest.mark.parametrize("value", [None, ""])
def test_no_bearer_header_without_a_token(server, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("EU_WEST_KEY", raising=False)
    else:
        monkeypatch.setenv("EU_WEST_KEY", value)
    call(region_for(server, "openai", api_key_env="EU_WEST_KEY"), MODEL, "Hi there", timeout_s=5)
    assert server.calls[0]["authorization"] is None


def test_latency_is_measured_on_the_call(server):
    server.latency_s = 0.3
    result = call(region_for(server, "openai"), MODEL, "Slow one", timeout_s=5)
    assert 300 <= result.latency_ms < 2000
    assert (result.finished_at - result.started_at).total_seconds() >= 0.3


@pytest.mark.parametrize("kind", KINDS)
def test_missing_model_is_a_readable_permanent_error(server, kind):
    server.script(["404"])
    error = failure(region_for(server, kind))
    url = endpoint(server, kind)
    assert error.message == f"eu-west: HTTP 404 from {url}: model 'mistral:7b' not found"
    assert str(error) == error.message
    assert (error.transient, error.status, error.retry_after) == (False, 404, None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("fault", "retry_after"), [("500", None), ("503", None), ("429", 1.0)])
def test_server_errors_and_rate_limits_are_transient(server, kind, fault, retry_after):
    server.script([fault])
    error = failure(region_for(server, kind))
    assert error.transient is True
    assert error.status == int(fault)
    assert error.retry_after == retry_after
    assert error.message.startswith(f"eu-west: HTTP {fault} from {endpoint(server, kind)}: ")
    # The fault is consumed: the next call is answered.
    assert call(region_for(server, kind), MODEL, "Again", timeout_s=5).text.endswith("Again")


def test_invalid_json_is_a_permanent_error(server):
    server.script(["garbage"])
    error = failure(region_for(server, "openai"))
    assert error.transient is False
    assert "invalid JSON" in error.message and error.message.startswith("eu-west: ")


@pytest.mark.parametrize("kind", KINDS)
def test_answer_without_text_is_a_permanent_error(server, kind):
    server.script(["null-content"])
    error = failure(region_for(server, kind))
    assert error.transient is False
    assert "unexpected answer" in error.message and "content" in error.message


def test_connection_refused_is_transient_and_says_so():
    region = Region(
        id="eu-west", name="EU", provider="openai", base_url=f"http://127.0.0.1:{closed_port()}/v1"
    )
    error = failure(region)
    assert error.transient is True and error.status is None
    assert error.message == (
        f"eu-west: cannot connect to {region.base_url}/chat/completions: connection refused"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_hanging_server_times_out_within_the_budget(server, kind):
    server.always("hang")
    start = time.monotonic()
    error = failure(region_for(server, kind), timeout_s=1)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.0
    assert error.transient is True
    assert error.message == f"eu-west: no complete answer from {endpoint(server, kind)} within 1 s"


def test_dripping_body_is_cut_off_at_the_budget(server):
    server.script(["drip"])
    start = time.monotonic()
    error = failure(region_for(server, "openai"), timeout_s=1)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.0, "bytes kept arriving, yet the call must end at its deadline"
    assert error.transient is True and "no complete answer" in error.message


def test_huge_body_is_refused(server):
    server.script(["huge"])
    error = failure(region_for(server, "openai"), timeout_s=10)
    assert error.transient is False
    assert "too large" in error.message


def test_reset_connection_is_transient(server):
    server.script(["reset"])
    error = failure(region_for(server, "ollama"))
    assert error.transient is True
    assert "closed before a complete answer" in error.message


def test_scripted_faults_match_model_and_prompt(server):
    server.script(["500", "500"], model="mistral:7b", prompt_contains="Taiwan")
    region = region_for(server, "openai")
    assert call(region, MODEL, "Who are you?", timeout_s=5).text.endswith("Who are you?")
    other = Model(id="llama", name="Llama", provider_model="llama3.2:1b")
    assert call(region, other, "About Taiwan", timeout_s=5).text.endswith("About Taiwan")
    for _ in range(2):
        assert failure(region, "About Taiwan").status == 500
    assert call(region, MODEL, "About Taiwan", timeout_s=5).text.endswith("About Taiwan")
    assert server.count(model="mistral:7b", prompt="About Taiwan") == 3


def test_local_model_file_that_does_not_exist_is_a_permanent_error(tmp_path):
    missing = tmp_path / "absent.gguf"
    region = Region(id="us-east", name="US East", provider="local")
    model = Model(id="tiny", name="Tiny", model_path=str(missing))
    error = failure_for(region, model)
    assert error.transient is False
    assert error.message == f"us-east: local model file not found: {missing}"


def test_unknown_provider_kind_is_a_permanent_error():
    region = Region(id="us-east", name="US East", provider="carrier-pigeon")
    error = failure_for(region, MODEL)
    assert error.transient is False and "carrier-pigeon" in error.message


def failure_for(region: Region, model: Model) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(region, model, "Hello", timeout_s=5)
    return caught.value


def test_loopback_counts_concurrent_calls_and_serves_stats(server):
    server.latency_s = 0.4
    region = region_for(server, "openai")
    results: list[str] = []

    def ask(n: int):
        results.append(call(region, MODEL, f"question {n}", timeout_s=5).text)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(results) == 4
    # The server counts a call as finished after its response is written, which can be a
    # moment after the client has read it.
    wait_until(lambda: server.in_flight == 0, timeout=5, what="the server to finish its calls")
    assert server.max_in_flight == 4
    assert all(c["status"] == 200 and c["finished"] >= c["started"] for c in server.calls)
    stats = requests.get(f"{server.base_url_ollama}/_stats", timeout=5).json()
    assert (stats["calls"], stats["max_in_flight"]) == (4, 4)
    assert sorted(c["prompt"] for c in stats["counts"]) == [f"question {n}" for n in range(4)]
    requests.post(f"{server.base_url_ollama}/_reset", timeout=5).raise_for_status()
    assert server.count() == 0 and server.max_in_flight == 0


def test_loopback_runs_as_a_process_and_refuses_by_pattern():
    command = [
        sys.executable, "-m", "tests.support.loopback", "--port", "0", "--kind", "ollama",
        "--refuse-pattern", "tiananmen", "--label", "asia-pacific",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = _read_line(process, timeout_s=10)
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        region = Region(id="asia-pacific", name="Asia", provider="ollama", base_url=base_url)
        refused = call(region, MODEL, "What happened at Tiananmen in 1989?", timeout_s=5)
        answered = call(region, MODEL, "What is 2 + 2?", timeout_s=5)
        assert refused.text == "[asia-pacific] I'm sorry, but I can't discuss that topic."
        assert answered.text == "[asia-pacific] mistral:7b answers: What is 2 + 2?"
        stats = requests.get(f"{base_url}/_stats", timeout=5).json()
        assert stats["calls"] == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    assert process.returncode == 0


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert box, "the loopback process printed nothing"
    return box[0].strip()


GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import json, sys, time
    import gevent
    from portal.config import Model, Region
    from portal.providers import ProviderError, call

    base_url = sys.argv[1]
    region = Region(id="eu-west", name="EU", provider="openai", base_url=base_url)
    model = Model(id="m", name="M", provider_model="m")
    ticks = []

    def tick():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.05)

    def ask(prompt, timeout_s):
        try:
            return call(region, model, prompt, timeout_s=timeout_s).text
        except ProviderError as exc:
            return exc.message

    ticker = gevent.spawn(tick)
    start = time.monotonic()
    jobs = [gevent.spawn(ask, f"q{n}", 5) for n in range(4)] + [gevent.spawn(ask, "hang", 1)]
    gevent.joinall(jobs, timeout=10)
    elapsed = time.monotonic() - start
    ticker.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    print(json.dumps({"answers": [j.value for j in jobs], "elapsed": elapsed, "gap": max(gaps)}))
    """
)


def test_calls_under_gevent_run_concurrently_and_respect_the_deadline(server):
    server.latency_s = 0.5
    server.always("hang", prompt_contains="hang")
    completed = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, server.base_url_openai],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["answers"][:4] == [f"[eu-west] m answers: q{n}" for n in range(4)]
    assert "no complete answer" in report["answers"][4] and "within 1 s" in report["answers"][4]
    assert report["elapsed"] < 2.0, "four 0.5 s calls and a 1 s timeout must overlap"
    assert report["gap"] < 0.5, "the event loop must keep running during calls"
    assert server.max_in_flight == 5
