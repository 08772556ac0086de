"""Engine processes for tests: loopback providers, a configuration file, and real
`flask --app wsgi beacon worker` subprocesses (gevent-patched, unlike the pytest process).

`Engine` owns everything one test starts and stops it all on `close()`.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

from portal.settings import ENV_NAMES
from portal.status import JOB_ENDED
from tests.support.live_server import Process, wait_until
from tests.support.loopback import LoopbackProvider

REGIONS = {
    "us-east": ("US East", "US_EAST_BASE_URL"),
    "eu-west": ("EU West", "EU_WEST_BASE_URL"),
    "asia-pacific": ("Asia-Pacific", "ASIA_PACIFIC_BASE_URL"),
}
MODELS = {
    "llama3.2-1b": ("Llama 3.2-1B", "llama3.2:1b"),
    "mistral-7b": ("Mistral 7B", "mistral:7b"),
    "qwen2.5-1.5b": ("Qwen 2.5-1.5B", "qwen2.5:1.5b"),
}
PROVIDER_MODEL = {model_id: served for model_id, (_, served) in MODELS.items()}


def write_config(
    path: Path,
    base_urls: dict[str, str],
    *,
    region_caps: dict[str, int] | None = None,
    region_rates: dict[str, str] | None = None,
    witnesses: list[tuple[str, str]] | None = None,
    **execution,
) -> Path:
    """Writes a three-models configuration whose regions point at `base_urls`, asking the
    `witnesses` ([(url, cosignature vkey)]) to cosign the log."""
    limits = {
        "max_concurrency": 6,
        "call_timeout_s": 5,
        "job_timeout_s": 120,
        "max_attempts": 3,
        "lease_s": 2,
    }
    limits.update(execution)
    lines = ["[execution]"] + [f"{k} = {v}" for k, v in limits.items()]
    for region, (name, _) in REGIONS.items():
        lines += [
            "",
            f"[regions.{region}]",
            f'name = "{name}"',
            'provider = "openai"',
            f'base_url = "{base_urls[region]}"',
        ]
        if region_caps and region in region_caps:
            lines.append(f"max_concurrency = {region_caps[region]}")
        if region_rates and region in region_rates:
            lines.append(f'rate_limit = "{region_rates[region]}"')
    for model_id, (name, served) in MODELS.items():
        lines += ["", f'[models."{model_id}"]', f'name = "{name}"', f'provider_model = "{served}"']
    for url, vkey in witnesses or []:
        name = vkey.split("+", 1)[0]
        lines += ["", "[[witnesses]]", f'name = "{name}"', f'url = "{url}"']
        lines.append(f'public_key = "{vkey}"')
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def clean_env(**values: str) -> dict[str, str]:
    """Returns this process's environment without Beacon settings, plus `values`."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    for _, var in REGIONS.values():
        env.pop(var, None)
    env.pop("BEACON_DISPATCHER", None)
    env.update(
        SECRET_KEY="test-secret",
        BEACON_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode(),
        PYTHONUNBUFFERED="1",
    )
    env.update(values)
    return env


class WorkerProcess(Process):
    """One `flask --app wsgi beacon worker` subprocess writing its log to a file. On `stop()`
    (SIGTERM) it hands its leases back; after `kill()` (SIGKILL) they stay until they expire."""

    def __init__(self, env: dict[str, str], log_path: Path):
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "beacon", "worker"]
        super().__init__(command, env, log_path, name="worker")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_for(lambda: "stop with Ctrl-C" in self.log(), timeout, "the worker to start")


class Engine:
    """Loopback providers, a configuration and worker processes for one test."""

    def __init__(self, tmp_path: Path, database_url: str):
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.providers: list[LoopbackProvider] = []
        self.workers: list[WorkerProcess] = []

    def provider(self, label: str, latency_s: float = 0.0, **kwargs) -> LoopbackProvider:
        """Starts a loopback provider whose answers name `label`, the model and the prompt."""
        provider = LoopbackProvider(latency_s=latency_s, label=label, **kwargs).start()
        self.providers.append(provider)
        return provider

    def three_providers(self, latency_s: float = 0.0) -> dict[str, LoopbackProvider]:
        """Starts one provider per region, labelled with the region id."""
        return {region: self.provider(region, latency_s) for region in REGIONS}

    def config(self, base_urls: dict[str, str], name: str = "beacon.toml", **options) -> Path:
        return write_config(self.tmp_path / name, base_urls, **options)

    def worker(self, config: Path | str, **env: str) -> WorkerProcess:
        """Starts a worker on this test's database and `config` ("" for the embedded default)."""
        index = len(self.workers)
        worker = WorkerProcess(
            clean_env(DATABASE_URL=self.database_url, BEACON_CONFIG=str(config), **env),
            self.tmp_path / f"worker-{index}.log",
        )
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for provider in self.providers:
            provider.stop()


def submit(client, signer, spec: dict) -> str:
    """Submits a signed spec through the API and returns the job id."""
    response = client.post("/api/v1/jobs", data=signer.body(spec), content_type="application/json")
    assert response.status_code == 202, response.json
    return response.json["job"]["id"]


def get_job(client, job_id: str) -> dict:
    response = client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.json
    return response.json["job"]


ENDED = JOB_ENDED


def wait_for_job(client, job_id: str, timeout: float = 60.0, engine: Engine | None = None):
    """Polls the API until the job has ended (and every execution with it); returns the job."""

    def ended():
        job = get_job(client, job_id)
        done = job["status"] in ENDED and job["finished_at"] is not None
        return job if done else None

    try:
        return wait_until(ended, timeout, interval=0.2, what=f"job {job_id} to end")
    except AssertionError as exc:
        logs = engine.logs() if engine else ""
        raise AssertionError(f"{exc}; job now: {get_job(client, job_id)}\n{logs}") from None
