"""Bad schedules and webhook settings stop the start with one line naming the key (SPEC 12)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from portal.config import ConfigError, load_config
from tests.support.live_server import ROOT, server_env
from tests.support.watching import new_secret

REGION = '[regions.us-east]\nprovider = "openai"\nbase_url = "http://127.0.0.1:1/v1"\n'
MODEL = '[models.m1]\nname = "M1"\n'
GOOD = '[schedules.daily]\nquestions = ["identity_basic"]\nevery = "24h"\n'


def write(tmp_path, text: str):
    path = tmp_path / "beacon.toml"
    path.write_text(REGION + MODEL + text, "utf-8")
    return path


def test_a_schedule_takes_defaults_from_the_configuration(tmp_path):
    config = load_config(
        write(
            tmp_path,
            GOOD + '[schedules.b]\nquestions = ["taiwan_status"]\n'
            'regions = ["us-east"]\nevery = "90s"\nruns = 2\n',
        )
    )
    daily = config.schedules["daily"]
    assert (daily.every_s, daily.models, daily.regions) == (86400, ("m1",), ("us-east",))
    assert daily.languages == () and daily.runs == 1
    assert config.schedules["b"].every_s == 90 and config.schedules["b"].runs == 2
    assert config.watch.similarity_threshold == 0.6 and config.watch.webhook_url is None


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            GOOD.replace('"identity_basic"', '"no_such_question"'),
            "schedules.daily.questions",
            "unknown question 'no_such_question'",
        ),
        (GOOD + 'models = ["m2"]\n', "schedules.daily.models", "unknown model 'm2'"),
        (GOOD + 'regions = ["mars"]\n', "schedules.daily.regions", "unknown region 'mars'"),
        (GOOD + 'languages = ["fr"]\n', "schedules.daily.languages", "language 'fr'"),
        (GOOD.replace('"24h"', '"4s"'), "schedules.daily.every", "at least 5 s"),
        (GOOD.replace('"24h"', '"soon"'), "schedules.daily.every", 'like "30s"'),
        (GOOD.replace('every = "24h"\n', ""), "schedules.daily.every", "required"),
        (GOOD + "colour = 1\n", "schedules.daily.colour", "unknown key"),
        (GOOD + "runs = 0\n", "schedules.daily.runs", "1 to 10"),
        (
            '[schedules.Daily]\nquestions = ["identity_basic"]\nevery = "1h"\n',
            "schedules.Daily",
            "lowercase",
        ),
        (
            '[watch]\nwebhook_url = "ftp://example.org/hook"\nwebhook_secret_env = "S"\n',
            "watch.webhook_url",
            "http:// or https://",
        ),
        (
            '[watch]\nwebhook_url = "https://example.org/hook"\n',
            "watch.webhook_secret_env",
            "required",
        ),
        (
            '[watch]\nwebhook_url = "https://example.org/h"\nwebhook_secret_env = "NOPE_NOT_SET"\n',
            "watch.webhook_secret_env",
            "NOPE_NOT_SET is not set",
        ),
        ("[watch]\nsimilarity_threshold = 2\n", "watch.similarity_threshold", "0 to 1"),
    ],
)
def test_bad_watch_settings_name_the_key(tmp_path, text, key, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == key and problem in caught.value.problem


def test_a_secret_that_is_not_whsec_base64_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "hunter2")
    text = '[watch]\nwebhook_url = "https://example.org/h"\nwebhook_secret_env = "HOOK_SECRET"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == "watch.webhook_secret_env" and "hunter2" not in str(caught.value)
    monkeypatch.setenv("HOOK_SECRET", new_secret())
    assert load_config(write(tmp_path, text)).watch.webhook_target == "https://example.org/h"


def test_the_server_refuses_to_start_with_one_line_naming_the_key(tmp_path):
    url = "ftp://user:pw@example.org/hook?token=s3cret"
    path = write(tmp_path, f'[watch]\nwebhook_url = "{url}"\nwebhook_secret_env = "S"\n')
    env = server_env({"BEACON_CONFIG": str(path)}, tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "watch.webhook_url" in lines[0], result.stderr
    assert "s3cret" not in result.stderr and "pw@" not in result.stderr
