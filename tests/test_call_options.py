"""Region headers, extra_body, temperature, max_tokens and prices in the TOML (SPEC section 13):
what a good file gives, and how a bad one refuses to start with one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from portal import call_options, prices
from portal.config import ConfigError, load_config
from tests.support.apps import ROOT

REGION = '[regions.or]\nprovider = "openai"\nbase_url = "https://openrouter.ai/api/v1"\n'
MODEL = '[models.m]\nprovider_model = "meta-llama/llama-3.1-8b-instruct"\n'


def write(tmp_path, text: str):
    path = tmp_path / "beacon.toml"
    path.write_text(text, "utf-8")
    return path


def test_a_full_region_and_model_load(tmp_path, monkeypatch):
    monkeypatch.setenv("COST_TEST_TITLE_KEY", "t-123")
    text = (
        REGION
        + 'headers = {"HTTP-Referer" = "https://beacon.example", "X-Title" = "Beacon",'
        + ' "X-Key" = {env = "COST_TEST_TITLE_KEY"}}\n'
        + 'extra_body = {provider = {order = ["deepinfra"], allow_fallbacks = false}}\n'
        + "temperature = 0.5\nmax_tokens = 64\n"
        + '[regions.or.prices."m"]\nprice_out_per_mtok = 0.2\n'
        + MODEL
        + "price_in_per_mtok = 0.05\nprice_out_per_mtok = 0.08\ntemperature = 1\nmax_tokens = 9\n"
    )
    config = load_config(write(tmp_path, text))
    region, model = config.regions["or"], config.models["m"]
    assert region.headers == (
        ("HTTP-Referer", "https://beacon.example"),
        ("X-Title", "Beacon"),
        ("X-Key", "t-123"),
    )
    assert "t-123" not in repr(region)  # a header value from the environment is a secret
    assert region.secret_env_names == ("COST_TEST_TITLE_KEY",)
    assert config.secret_env_names() == ["COST_TEST_TITLE_KEY"]
    assert region.extra_body == {"provider": {"order": ["deepinfra"], "allow_fallbacks": False}}
    assert call_options.temperature_for(region, model) == 0.5  # the region wins
    assert call_options.max_tokens_for(region, model) == 64
    # The region overrides only the output price; the input price stays the model's.
    assert prices.price_of(region, model) == prices.Price(0.05, 0.2)


def test_defaults_are_temperature_0_and_512_tokens_and_no_price(tmp_path):
    config = load_config(write(tmp_path, REGION + MODEL))
    region, model = config.regions["or"], config.models["m"]
    assert call_options.temperature_for(region, model) == 0.0
    assert call_options.max_tokens_for(region, model) == 512
    assert prices.price_of(region, model) is None
    assert config.intake.max_answers == 10_000 and config.intake.max_job_cost_usd is None


def test_the_embedded_default_is_free_and_keeps_its_short_answers():
    config = load_config()
    model = config.models["smollm2-135m"]
    for region in config.regions.values():
        assert prices.price_of(region, model) == prices.FREE  # this machine costs nothing
        assert call_options.max_tokens_for(region, model) == 256


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            MODEL + "price_in_per_mtok = -1\nprice_out_per_mtok = 1\n",
            "models.m.price_in_per_mtok",
            "0 or more",
        ),
        (
            MODEL + 'price_in_per_mtok = "cheap"\nprice_out_per_mtok = 1\n',
            "models.m.price_in_per_mtok",
            "must be",
        ),
        (
            MODEL + "price_in_per_mtok = nan\nprice_out_per_mtok = 1\n",
            "models.m.price_in_per_mtok",
            "0 or more",
        ),
        (MODEL + "price_in_per_mtok = 1\n", "models.m.price_out_per_mtok", "set both"),
        (
            MODEL + REGION + '[regions.or.prices."m"]\nprice_input = 1\n',
            "regions.or.prices.m.price_input",
            "unknown key",
        ),
        (
            MODEL + REGION + '[regions.or.prices."m"]\nprice_in_per_mtok = -0.5\n',
            "regions.or.prices.m.price_in_per_mtok",
            "0 or more",
        ),
        (
            MODEL + REGION + '[regions.or.prices."gpt-9"]\nprice_in_per_mtok = 1\n',
            "regions.or.prices.gpt-9",
            "unknown model",
        ),
        (
            REGION + 'headers = {"X-Key" = {env = "COST_TEST_UNSET_VAR"}}\n',
            "regions.or.headers.X-Key",
            "COST_TEST_UNSET_VAR is not set",
        ),
        (
            REGION + 'headers = {"X-Key" = {name = "X"}}\n',
            "regions.or.headers.X-Key",
            'text or {env = "NAME"}',
        ),
        (
            REGION + 'headers = {"X-Title" = "a\\nInjected: yes"}\n',
            "regions.or.headers.X-Title",
            "line break",
        ),
        (
            REGION + 'headers = {"Bad Name" = "x"}\n',
            "regions.or.headers.Bad Name",
            "not a valid header name",
        ),
        (
            REGION + 'headers = {"Content-Length" = "3"}\n',
            "regions.or.headers.Content-Length",
            "set by the portal",
        ),
        (
            REGION + 'api_key_env = "K"\nheaders = {"authorization" = "Bearer x"}\n',
            "regions.or.headers.authorization",
            "api_key_env (K) already sets it",
        ),
        (
            REGION + 'extra_body = {model = "other"}\n',
            "regions.or.extra_body.model",
            "would overwrite the request's own model",
        ),
        (
            REGION + "extra_body = {messages = []}\n",
            "regions.or.extra_body.messages",
            "would overwrite the request's own messages",
        ),
        (
            REGION + "extra_body = {max_tokens = 9000}\n",
            "regions.or.extra_body.max_tokens",
            "set max_tokens on the region",
        ),
        (
            REGION + "extra_body = {options = {num_predict = 9}}\n",
            "regions.or.extra_body.options.num_predict",
            "would overwrite",
        ),
        (
            REGION + "extra_body = {when = 1979-05-27}\n",
            "regions.or.extra_body.when",
            "JSON cannot hold",
        ),
        (REGION + "temperature = -0.1\n", "regions.or.temperature", "0 to 10"),
        (REGION + "max_tokens = 0\n", "regions.or.max_tokens", "1 to"),
        (MODEL + 'max_tokens = "lots"\n', "models.m.max_tokens", "must be a whole number"),
        ("[intake]\nmax_answers = 0\n", "intake.max_answers", "at least 1"),
        ("[intake]\nmax_job_cost_usd = -5\n", "intake.max_job_cost_usd", "at least 0"),
        ("[intake]\nmax_job_cost_usd = inf\n", "intake.max_job_cost_usd", "finite"),
    ],
)
def test_bad_options_refuse_with_one_line_naming_the_key(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"{path}: {key}: " in message and problem in message, message
    assert "\n" not in message


def test_the_server_refuses_to_start_with_that_one_line(tmp_path):
    path = write(tmp_path, REGION + 'headers = {"X-Key" = {env = "COST_TEST_UNSET_VAR"}}\n')
    env = {"BEACON_CONFIG": str(path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    done = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"beacon: cannot start: {path}: regions.or.headers.X-Key: the environment variable"
        " COST_TEST_UNSET_VAR is not set"
    ]


def test_extra_body_merges_table_into_table():
    payload = {"model": "m", "options": {"temperature": 0.0, "num_predict": 8}}
    extra = {"options": {"num_ctx": 4096}, "provider": {"order": ["a"]}}
    assert call_options.merged_body(payload, extra) == {
        "model": "m",
        "options": {"temperature": 0.0, "num_predict": 8, "num_ctx": 4096},
        "provider": {"order": ["a"]},
    }
    assert payload["options"] == {"temperature": 0.0, "num_predict": 8}  # not changed in place
