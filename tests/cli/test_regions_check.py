"""`flask beacon regions check` (SPEC section 13): one short prompt to each configured (region,
model) pair against loopback hosts; a refused key makes it exit 1 naming the region and the
variable, never the key."""

from __future__ import annotations

import socket

import pytest

from tests.support.loopback import LoopbackProvider

KEY = "sk-live-do-not-print-4f2a9c"
HEADER_SECRET = "hdr-do-not-print-77b1"


@pytest.fixture
def hosts():
    with (
        LoopbackProvider(label="good") as good,
        LoopbackProvider(label="refusing") as refusing,
        LoopbackProvider(label="claude") as claude,
    ):
        refusing.always("401-echo")  # quotes the key it refused, as some hosts do
        yield good, refusing, claude


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_app(make_app, tmp_path, hosts, monkeypatch, extra: str = ""):
    good, refusing, claude = hosts
    monkeypatch.setenv("COST_TEST_GOOD_KEY", "sk-good-1")
    monkeypatch.setenv("COST_TEST_US_EAST_API_KEY", KEY)
    monkeypatch.setenv("COST_TEST_ANTHROPIC_KEY", "sk-ant-3")
    monkeypatch.setenv("COST_TEST_GATEWAY", HEADER_SECRET)
    path = tmp_path / "beacon.toml"
    path.write_text(
        f"""
[regions.good]
provider = "openai"
base_url = "{good.base_url_openai}"
api_key_env = "COST_TEST_GOOD_KEY"

[regions.us-east]
provider = "openai"
base_url = "{refusing.base_url_openai}"
api_key_env = "COST_TEST_US_EAST_API_KEY"
headers = {{"X-Gateway" = {{env = "COST_TEST_GATEWAY"}}}}

[regions.claude]
provider = "anthropic"
base_url = "{claude.base_url_anthropic}"
api_key_env = "COST_TEST_ANTHROPIC_KEY"

[models.m]
provider_model = "vendor/m"
{extra}""",
        "utf-8",
    )
    return make_app(BEACON_CONFIG=str(path))


def run(app, *args):
    return app.test_cli_runner().invoke(args=["beacon", "regions", "check", *args])


def test_a_refused_key_fails_the_check_naming_the_region_and_variable(
    make_app, tmp_path, hosts, monkeypatch
):
    result = run(check_app(make_app, tmp_path, hosts, monkeypatch))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "region",
        "model",
        "status",
        "latency",
        "answered",
        "as",
        "what",
        "to",
        "do",
    ]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert rows["good"].split()[:3] == ["good", "m", "ok"] and "vendor/m" in rows["good"]
    assert rows["claude"].split()[:3] == ["claude", "m", "ok"]
    refused = rows["us-east"]
    assert refused.split()[:4] == ["us-east", "m", "HTTP", "401"]
    assert "401: the key in COST_TEST_US_EAST_API_KEY was refused" in refused
    assert lines[-1] == "2 of 3 pairs answered."
    # The host quoted the key back: the check never prints it, nor the header secret.
    assert KEY not in result.output and KEY[:12] not in result.output
    assert HEADER_SECRET not in result.output
    _, refusing, _ = hosts
    assert refusing.calls[0]["authorization"] == f"Bearer {KEY}"  # it was sent, though


def test_everything_answering_exits_0_and_filters_pick_pairs(
    make_app, tmp_path, hosts, monkeypatch
):
    app = check_app(make_app, tmp_path, hosts, monkeypatch)
    result = run(app, "--region", "good", "--region", "claude", "--model", "m")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "2 of 2 pairs answered."
    good, refusing, claude = hosts
    assert (len(good.calls), len(refusing.calls), len(claude.calls)) == (1, 0, 1)
    assert good.calls[0]["payload"]["max_tokens"] == 16
    unknown = run(app, "--region", "mars")
    assert (
        unknown.exit_code == 2
        and "no region 'mars' (known: good, us-east, claude)" in unknown.output
    )


def test_hints_for_an_unset_key_a_missing_model_and_a_dead_host(
    make_app, tmp_path, hosts, monkeypatch
):
    good, _, _ = hosts
    good.always("404")
    app = check_app(
        make_app,
        tmp_path,
        hosts,
        monkeypatch,
        f'[regions.dead]\nprovider = "ollama"\nbase_url = "http://127.0.0.1:{closed_port()}"\n',
    )
    monkeypatch.delenv("COST_TEST_US_EAST_API_KEY")
    result = run(app, "--timeout", "5")
    assert result.exit_code == 1
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:-1]}
    assert "404: no such model or path: check provider_model ('vendor/m')" in rows["good"]
    assert "401: COST_TEST_US_EAST_API_KEY is not set: export the key in it" in rows["us-east"]
    assert rows["dead"].split()[2] == "unreachable"
    assert "nothing answers at base_url (http://127.0.0.1:" in rows["dead"]
    assert result.output.splitlines()[-1] == "1 of 4 pairs answered."
