"""Runs of the same job, one after another, for the watch's tests: three loopback regions whose
answers a test can change between runs, the engine in this process (tests/support/inline.py),
and the watcher's passes called as the watcher would call them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from portal.db import db
from portal.watch import scans
from tests.support.apps import spec_3x3
from tests.support.inline import run_inline
from tests.support.loopback import LoopbackProvider
from tests.support.workers import REGIONS, get_job, submit, write_config

MODEL = "llama3.2-1b"
QUESTIONS = ["identity_basic", "geography_basic"]
OWNER = "watch-test"
REFUSAL = "I'm sorry, but I can't discuss that topic."


def substantive(region: str, prompt: str) -> str:
    """The text every region gives until a test changes it: the same on every run."""
    return (
        f"A detailed and factual answer to '{prompt}', covering the background, the main facts "
        "and how the sources describe them."
    )


def new_secret() -> str:
    """Returns a fresh Standard Webhooks secret, `whsec_` and base64."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


class Runs:
    """Three regions answering through loopback providers; `say[region]` is what each says."""

    def __init__(self, tmp_path: Path, make_app, signer, toml: str = "", **env: str):
        self.signer = signer
        self.say = dict.fromkeys(REGIONS, substantive)
        self.providers = {
            region: LoopbackProvider(
                label=region, responder=lambda model, prompt, r=region: self.say[r](r, prompt)
            ).start()
            for region in REGIONS
        }
        path = write_config(
            tmp_path / "beacon.toml", {r: p.base_url_openai for r, p in self.providers.items()}
        )
        if toml:
            path.write_text(path.read_text("utf-8") + "\n" + toml, "utf-8")
        self.config_path = path
        # Lexical similarity: the numbers the tests reason about, without an embedding model.
        self.app = make_app(BEACON_CONFIG=str(path), BEACON_SEMANTIC="0", **env)
        self.client = self.app.test_client()
        self.count = 0

    def run(self, questions: list[str] | None = None, runs: int = 1) -> str:
        """Submits the job again, runs it to its end here, compares it; returns its id."""
        self.count += 1
        spec = spec_3x3(
            id=f"run-{self.count}",
            questions=questions or QUESTIONS,
            runs=runs,
            metadata={"models": [MODEL], "nonce": f"watch-run-{self.count}"},
        )
        job_id = submit(self.client, self.signer, spec)
        run_inline(self.app)
        assert get_job(self.client, job_id)["status"] == "completed"
        self.scan()
        return job_id

    def scan(self) -> int:
        """Runs the watcher's comparison pass once."""
        with self.app.app_context():
            try:
                return scans.scan_due(OWNER)
            finally:
                db.session.remove()

    def changes(self, **query) -> list[dict]:
        response = self.client.get("/api/v1/changes", query_string=query)
        assert response.status_code == 200, response.json
        return response.json["items"]

    def close(self) -> None:
        for provider in self.providers.values():
            provider.stop()
