"""Helpers for the production tests: the Procfile's processes on PostgreSQL, many jobs with
prompts no other job shares (so loopback counts say how often each answer was asked), and the
waits around them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from portal.status import JOB_ENDED
from tests.support.apps import Signer
from tests.support.live_server import ROOT, LiveServer, procfile, shell_env, start_web, wait_until
from tests.support.workers import MODELS, PROVIDER_MODEL, REGIONS, clean_env, write_config

ENDED = JOB_ENDED


def require_postgres(database_url: str) -> str:
    """Returns the URL when it is PostgreSQL; otherwise skips, loudly."""
    if not database_url.startswith("postgres"):
        pytest.skip(
            "!!! this test needs PostgreSQL: set TEST_DATABASE_URL; it DID NOT RUN",
        )
    return database_url


def job_spec(tag: str) -> dict:
    """A 3 models x 3 regions x 2 questions spec (18 answers) whose prompts name `tag`."""
    return {
        "version": "v1",
        "constraints": {"regions": list(REGIONS)},
        "metadata": {"models": list(MODELS)},
        "questions": [f"Job {tag}: what is one plus one?", f"Job {tag}: name a colour."],
    }


def config(tmp_path: Path, base_urls: dict[str, str], **execution) -> Path:
    """Writes the three-models configuration with a submission limit no test reaches."""
    # Generous time limits: the tests share two cores with other work, and a call timing out
    # is asked again, which would blur the counts they check.
    limits = {"call_timeout_s": 60, "job_timeout_s": 900, "lease_s": 10, **execution}
    path = write_config(tmp_path / "beacon.toml", base_urls, **limits)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('\n[intake]\nrate_limit = "10000 per minute"\n')
    return path


def web_env(database_url: str, config_path: Path, signer: Signer, **extra: str) -> dict:
    """The web process's environment: two gevent workers, each running a dispatcher."""
    return clean_env(
        DATABASE_URL=database_url,
        BEACON_CONFIG=str(config_path),
        BEACON_TRUSTED_KEYS=json.dumps([signer.trusted_entry()]),
        WEB_CONCURRENCY="2",
        # The embedding model's CPU work on the event loop would delay lease renewals on a
        # busy test machine; lexical similarity is enough here.
        BEACON_SEMANTIC="0",
        **extra,
    )


def release(env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs the Procfile's release line as a platform does."""
    return subprocess.run(
        ["bash", "-c", procfile()["release"]],
        cwd=ROOT,
        env=shell_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(env: dict[str, str], log_path: Path) -> LiveServer:
    """Starts the Procfile's web line and waits for /health."""
    web = start_web(env, log_path)
    web.wait_ready(timeout=60, interval=0.2)
    return web


def submit(url: str, signer: Signer, spec: dict) -> str:
    response = requests.post(
        f"{url}/api/v1/jobs",
        data=signer.body(spec),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return response.json()["job"]["id"]


def wait_all_ended(url: str, job_ids: list[str], timeout: float) -> dict[str, str]:
    """Waits until every job has ended; returns {job id: status}."""
    statuses: dict[str, str] = {}

    def all_ended():
        for job_id in job_ids:
            if statuses.get(job_id) in ENDED:
                continue
            job = requests.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()["job"]
            if job["status"] in ENDED and job["finished_at"]:
                statuses[job_id] = job["status"]
        return len(statuses) == len(job_ids)

    wait_until(all_ended, timeout, interval=0.5, what=f"{len(job_ids)} jobs to end")
    return statuses


def asked_counts(providers: dict) -> dict[tuple[str, str, str], int]:
    """Returns how often each (region, provider model, prompt) was asked."""
    counts = {}
    for region, provider in providers.items():
        for row in provider.stats()["counts"]:
            counts[(region, row["model"], row["prompt"])] = row["count"]
    return counts


def expected_answers(tags: list[str]) -> set[tuple[str, str, str]]:
    """Every (region, provider model, prompt) the jobs named by `tags` ask."""
    return {
        (region, PROVIDER_MODEL[model], prompt)
        for tag in tags
        for prompt in job_spec(tag)["questions"]
        for model in MODELS
        for region in REGIONS
    }
