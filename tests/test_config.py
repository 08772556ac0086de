"""Configuration: the TOML format, its validation, and the environment (SPEC section 3)."""

from __future__ import annotations

import pytest

from portal import create_app
from portal.config import ConfigError, load_config
from portal.settings import database_url
from tests.support.apps import THREE_REGIONS

GOOD_REGION = '[regions.us-east]\nprovider = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n'


def write(tmp_path, text: str):
    path = tmp_path / "beacon.toml"
    path.write_text(text, "utf-8")
    return path


def test_embedded_default_is_three_local_regions_with_the_bank():
    config = load_config()
    assert list(config.regions) == ["us-east", "eu-west", "asia-pacific"]
    assert config.all_local
    bank = {
        "identity_basic",
        "math_basic",
        "geography_basic",
        "tiananmen_neutral",
        "taiwan_status",
        "hongkong_2019",
        "greatest_invention",
        "greatest_leader",
    }
    assert bank <= set(config.questions)
    assert [m.id for m in config.default_models()] == ["smollm2-135m"]


def test_three_regions_file_and_aliases():
    config = load_config(THREE_REGIONS)
    assert config.find_region("us") == config.regions["us-east"]
    assert config.find_region("ASIA").id == "asia-pacific"
    assert config.find_region("mars") is None
    assert config.models["mistral-7b"].provider_model == "mistral:7b"
    assert config.regions["eu-west"].max_concurrency == 2


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[execution]\nmax_concurrency = 0\n", "execution.max_concurrency", "at least 1"),
        ('[execution]\ncall_timeout_s = "fast"\n', "execution.call_timeout_s", "must be"),
        ("[execution]\nmax_concurency = 3\n", "execution.max_concurency", "unknown key"),
        ('[regions.us-east]\nprovider = "grpc"\n', "regions.us-east.provider", "one of"),
        ('[regions.us-east]\nprovider = "openai"\n', "regions.us-east.base_url", "required"),
        ('[regions.US_East]\nprovider = "local"\n', "regions.US_East", "lowercase"),
        (
            GOOD_REGION + '[regions.eu]\nprovider = "local"\naliases = ["US-EAST"]\n',
            "regions.eu.aliases",
            "already names",
        ),
        ('[questions.q1]\ncategory = "x"\n', "questions.q1.prompt", "required"),
        ('[models.m]\ndefault = "yes"\n', "models.m.default", "true or false"),
        ("[nonsense]\n", "nonsense", "unknown table"),
        ("[execution\n", "(syntax)", "not valid TOML"),
    ],
)
def test_bad_file_names_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message and key in message and problem in message


def test_bad_config_stops_start_up(tmp_path):
    path = write(tmp_path, "[execution]\nlease_s = -1\n")
    with pytest.raises(ConfigError, match="execution.lease_s"):
        create_app({"BEACON_CONFIG": str(path), "INSTANCE_PATH": str(tmp_path)})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_environment_overrides(tmp_path):
    with pytest.raises(ConfigError, match="BEACON_MAX_CONCURRENCY"):
        load_config(None, "lots")
    assert load_config(None, "7").execution.max_concurrency == 7
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"BEACON_ENV": "production", "SECRET_KEY": "", "INSTANCE_PATH": str(tmp_path)})
    with pytest.raises(ConfigError, match="BEACON_SIGNING_KEY"):
        create_app({"BEACON_SIGNING_KEY": "short", "INSTANCE_PATH": str(tmp_path)})
    with pytest.raises(ConfigError, match="BEACON_TRUSTED_KEYS"):
        create_app({"BEACON_TRUSTED_KEYS": "not-a-key", "INSTANCE_PATH": str(tmp_path)})


def test_railway_database_urls_use_psycopg3():
    assert database_url("postgres://u:p@h:5432/d", ".") == "postgresql+psycopg://u:p@h:5432/d"
    assert database_url("postgresql://u@h/d", ".") == "postgresql+psycopg://u@h/d"
    assert database_url(None, "/tmp/x").startswith("sqlite:////tmp/x/")


def test_portal_key_is_generated_once_into_the_instance(tmp_path):
    first = create_app({"INSTANCE_PATH": str(tmp_path), "BEACON_SIGNING_KEY": ""})
    second = create_app({"INSTANCE_PATH": str(tmp_path), "BEACON_SIGNING_KEY": ""})
    key = first.extensions["beacon"].portal_public_key
    assert key == second.extensions["beacon"].portal_public_key
    assert (tmp_path / "portal_signing_key").stat().st_mode & 0o077 == 0


def test_base_url_env_overrides_the_file(monkeypatch):
    monkeypatch.setenv("EU_WEST_BASE_URL", "http://127.0.0.1:9999/v1/")
    assert load_config(THREE_REGIONS).regions["eu-west"].base_url == "http://127.0.0.1:9999/v1"


def test_rate_limit_must_parse(tmp_path):
    with pytest.raises(ConfigError, match='intake.rate_limit: must read like "30 per minute"'):
        load_config(write(tmp_path, '[intake]\nrate_limit = "lots"\n'))
    assert load_config(write(tmp_path, '[intake]\nrate_limit = "5/second"\n')).intake.rate_limit
