"""What reaches the wire (SPEC section 13): a region's headers (env values read), its
extra_body, temperature and max_tokens, for each HTTP kind, and Anthropic's Messages API, all
against the recording loopback provider on 127.0.0.1."""

from __future__ import annotations

import pytest

from portal.config import load_config
from portal.providers import ProviderError, call
from tests.support.loopback import LoopbackProvider


@pytest.fixture
def server():
    with LoopbackProvider(label="wire") as provider:
        yield provider


def configured(tmp_path, region_toml: str, model_toml: str = ""):
    """Loads a one-region, one-model configuration through the TOML parser."""
    text = f'[regions.r]\n{region_toml}\n[models.m]\nprovider_model = "vendor/m-8b"\n{model_toml}'
    path = tmp_path / "beacon.toml"
    path.write_text(text, "utf-8")
    config = load_config(path)
    return config.regions["r"], config.models["m"]


def header(record: dict, name: str) -> str | None:
    found = [v for k, v in record["headers"].items() if k.lower() == name.lower()]
    assert len(found) <= 1, record["headers"]
    return found[0] if found else None


def test_openai_region_sends_its_headers_extra_body_and_sampling(tmp_path, server, monkeypatch):
    monkeypatch.setenv("COST_TEST_OR_KEY", "sk-or-1")
    monkeypatch.setenv("COST_TEST_HEADER", "hdr-secret-2")
    region, model = configured(
        tmp_path,
        f'provider = "openai"\nbase_url = "{server.base_url_openai}"\n'
        'api_key_env = "COST_TEST_OR_KEY"\n'
        'headers = {"HTTP-Referer" = "https://beacon.example", "X-Title" = "Beacon",'
        ' "X-Gateway-Key" = {env = "COST_TEST_HEADER"}, "Accept" = "application/json; v=2"}\n'
        'extra_body = {provider = {order = ["deepinfra"], allow_fallbacks = false}}\n'
        "temperature = 0.3\nmax_tokens = 5\n",
        "temperature = 0.9\nmax_tokens = 77\n",
    )
    result = call(region, model, "one two three four five six seven eight", timeout_s=5)
    seen = server.calls[0]
    assert header(seen, "Authorization") == "Bearer sk-or-1"
    assert header(seen, "HTTP-Referer") == "https://beacon.example"
    assert header(seen, "X-Title") == "Beacon"
    assert header(seen, "X-Gateway-Key") == "hdr-secret-2"  # read from the environment
    assert header(seen, "Accept") == "application/json; v=2"  # the region's replaces ours
    assert seen["payload"] == {
        "model": "vendor/m-8b",
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
        "max_tokens": 5,  # the region's, not the model's 77
        "temperature": 0.3,
        "provider": {"order": ["deepinfra"], "allow_fallbacks": False},
    }
    assert result.completion_tokens == 5  # the loopback honours max_tokens, one word a token


def test_model_sampling_applies_where_the_region_sets_none_then_defaults(tmp_path, server):
    base = f'provider = "openai"\nbase_url = "{server.base_url_openai}"\n'
    region, model = configured(tmp_path, base, "temperature = 0.7\nmax_tokens = 40\n")
    call(region, model, "Say hi", timeout_s=5)
    region, model = configured(tmp_path, base)
    call(region, model, "Say hi", timeout_s=5)
    first, second = (c["payload"] for c in server.calls)
    assert (first["temperature"], first["max_tokens"]) == (0.7, 40)
    assert (second["temperature"], second["max_tokens"]) == (0.0, 512)


def test_ollama_extra_body_merges_into_options(tmp_path, server):
    region, model = configured(
        tmp_path,
        f'provider = "ollama"\nbase_url = "{server.base_url_ollama}"\n'
        'headers = {"X-Title" = "Beacon"}\n'
        'extra_body = {options = {num_ctx = 4096}, keep_alive = "5m"}\n'
        "max_tokens = 12\n",
    )
    call(region, model, "Name a river.", timeout_s=5)
    seen = server.calls[0]
    assert header(seen, "X-Title") == "Beacon"
    assert seen["payload"]["options"] == {"temperature": 0.0, "num_predict": 12, "num_ctx": 4096}
    assert seen["payload"]["keep_alive"] == "5m" and seen["payload"]["stream"] is False


def anthropic_region(tmp_path, server, extra: str = ""):
    return configured(
        tmp_path,
        f'provider = "anthropic"\nbase_url = "{server.base_url_anthropic}"\n'
        f'api_key_env = "COST_TEST_ANTHROPIC_KEY"\n{extra}',
    )


def test_anthropic_messages_api(tmp_path, server, monkeypatch):
    monkeypatch.setenv("COST_TEST_ANTHROPIC_KEY", "sk-ant-test")
    region, model = anthropic_region(tmp_path, server, 'headers = {"anthropic-beta" = "x-1"}\n')
    result = call(region, model, "Who are you?", timeout_s=5, max_tokens=64)
    seen = server.calls[0]
    assert seen["kind"] == "anthropic"  # POST {base_url}/v1/messages
    assert header(seen, "x-api-key") == "sk-ant-test"
    assert header(seen, "anthropic-version") == "2023-06-01"
    assert header(seen, "anthropic-beta") == "x-1"
    assert header(seen, "Authorization") is None
    assert seen["payload"] == {
        "model": "vendor/m-8b",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Who are you?"}],
        "temperature": 0.0,
    }
    assert result.text == "[wire] vendor/m-8b answers: Who are you?"
    assert (result.provider, result.provider_model) == ("anthropic", "vendor/m-8b")
    assert (result.prompt_tokens, result.completion_tokens) == (3, 6)
    assert result.served_by["model"] == "vendor/m-8b"  # the model the reply names


def test_anthropic_refused_key_names_the_variable_not_the_key(tmp_path, server, monkeypatch):
    monkeypatch.setenv("COST_TEST_ANTHROPIC_KEY", "sk-ant-refused")
    region, model = anthropic_region(tmp_path, server)
    server.script(["401"])
    with pytest.raises(ProviderError) as caught:
        call(region, model, "Who are you?", timeout_s=5)
    message = caught.value.message
    assert message == (
        f"r: HTTP 401 from {server.base_url_anthropic}/v1/messages: invalid api key"
        " (the API key comes from COST_TEST_ANTHROPIC_KEY)"
    )
    assert caught.value.transient is False and "sk-ant" not in message


def test_anthropic_reply_without_text_is_a_readable_error(tmp_path, server):
    region, model = anthropic_region(tmp_path, server)
    server.script(["null-content"])
    with pytest.raises(ProviderError, match="unexpected answer .*no text block in content"):
        call(region, model, "Who are you?", timeout_s=5)


@pytest.mark.parametrize("kind", ["openai", "ollama", "anthropic"])
def test_a_reply_without_usage_reports_no_tokens(tmp_path, server, kind):
    base = {
        "openai": server.base_url_openai,
        "ollama": server.base_url_ollama,
        "anthropic": server.base_url_anthropic,
    }[kind]
    region, model = configured(tmp_path, f'provider = "{kind}"\nbase_url = "{base}"\n')
    server.script(["no-usage"])
    result = call(region, model, "Count nothing", timeout_s=5)
    assert result.text.endswith("Count nothing")
    assert (result.prompt_tokens, result.completion_tokens) == (None, None)
