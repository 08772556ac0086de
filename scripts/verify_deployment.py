#!/usr/bin/env python3
"""The launch checklist as a program: submit the 3-model verification job to a deployed portal.

    BEACON_USER_KEY=<base64 seed> python scripts/verify_deployment.py https://portal.example

Signs `scripts/3-model-verification-job.json` (beacon-jcs-v1, fresh nonce and timestamp) with
the key in BEACON_USER_KEY or --key-file, submits it, waits for it to end, and checks the
result through the API and the job page. Prints one PASS or FAIL line per check and exits 1 when
any check fails (2 when the job could not even be submitted).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import requests

from portal.intake import signing
from portal.status import JOB_ENDED

JOB_FILE = Path(__file__).with_name("3-model-verification-job.json")
ENDED = JOB_ENDED
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr", "param"}


class ModelGroups(HTMLParser):
    """Collects, per element with `data-model-group`, the `data-region` values inside it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.groups: dict[str, set[str]] = {}
        self._stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        group = found.get("data-model-group")
        if group is not None:
            self.groups.setdefault(group, set())
        region = found.get("data-region")
        if region is not None:
            for _, open_group in reversed(self._stack):
                if open_group is not None:
                    self.groups[open_group].add(region)
                    break
        if tag not in VOID:
            self._stack.append((tag, group))

    def handle_endtag(self, tag):
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                del self._stack[index:]
                return


def model_groups(html: str) -> dict[str, set[str]]:
    """Returns {model_id: regions shown inside that model's group} from a job page."""
    parser = ModelGroups()
    parser.feed(html)
    parser.close()
    return parser.groups


def load_seed(key_file: Path | None) -> bytes:
    raw = key_file.read_text().strip() if key_file else os.environ.get("BEACON_USER_KEY", "")
    if not raw:
        raise SystemExit("no signing key: set BEACON_USER_KEY (base64 seed) or pass --key-file")
    try:
        return signing.decode_seed(raw)
    except ValueError as exc:
        raise SystemExit(f"bad signing key: {exc}") from None


def fresh_spec() -> dict:
    """Returns the verification job with a new nonce and timestamp, unsigned."""
    spec = json.loads(JOB_FILE.read_text("utf-8"))
    metadata = spec.setdefault("metadata", {})
    metadata["nonce"] = secrets.token_urlsafe(12)
    metadata["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return spec


class Checklist:
    """Prints PASS/FAIL lines and remembers whether all passed."""

    def __init__(self):
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        if not ok:
            self.failed.append(name)
        return ok


def get(session, url: str) -> requests.Response:
    """GETs `url`, trying again when a kept-alive connection was closed under us."""
    for _ in range(2):
        try:
            return session.get(url, timeout=30)
        except requests.ConnectionError:
            # The server may close an idle kept-alive connection just as a request goes out.
            time.sleep(0.5)
    return session.get(url, timeout=30)


def wait_for_end(session, base: str, job_id: str, timeout_s: float) -> dict:
    """Polls the job until it ends or `timeout_s` passes; returns its last state."""
    deadline = time.monotonic() + timeout_s
    shown = None
    while True:
        job = get(session, f"{base}/api/v1/jobs/{job_id}").json()["job"]
        counts = job["counts"]
        line = f"  {job['status']}: {counts['completed']}/{counts['total']} answers completed"
        if line != shown:
            print(line, flush=True)
            shown = line
        if job["status"] in ENDED or time.monotonic() >= deadline:
            return job
        time.sleep(2)


def verify(base: str, seed: bytes, timeout_s: float) -> int:
    """Runs the checklist against the portal at `base`; returns the exit status."""
    spec = fresh_spec()
    models = spec["metadata"]["models"]
    regions = spec["constraints"]["regions"]
    body = json.dumps(signing.sign(spec, seed))
    session = requests.Session()
    try:
        response = session.post(
            f"{base}/api/v1/jobs",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
    except requests.RequestException as exc:
        print(f"FAIL submit: cannot reach {base}: {exc}")
        return 2
    if response.status_code != 202:
        print(f"FAIL submit: HTTP {response.status_code}: {response.text[:500]}")
        return 2
    job_id = response.json()["job"]["id"]
    print(f"PASS submit: job {job_id} accepted at {base}/jobs/{job_id}", flush=True)
    job = wait_for_end(session, base, job_id, timeout_s)

    checks = Checklist()
    executions = job.get("executions", [])
    checks.check("9 executions", len(executions) == 9, f"{len(executions)} executions")
    by_model = {m: sum(1 for e in executions if e.get("model_id") == m) for m in models}
    checks.check(
        "the right model_id on each execution",
        all(e.get("model_id") in models for e in executions) and set(by_model.values()) == {3},
        ", ".join(f"{m}: {n}" for m, n in by_model.items()),
    )
    pairs = {(e.get("model_id"), e.get("region")) for e in executions}
    wanted = {(m, r) for m in models for r in regions}
    checks.check(
        "9 distinct (model_id, region)",
        pairs == wanted,
        f"{len(pairs)} distinct, {len(wanted)} wanted",
    )
    for path in (
        f"/api/v1/executions?job_id={job_id}&limit=200",
        f"/api/v1/executions/job/{job_id}",
    ):
        items = get(session, f"{base}{path}").json().get("items", [])
        listed = {(e.get("model_id"), e.get("region")) for e in items}
        checks.check(
            f"model_id in GET {path.split('?')[0]}", listed == wanted, f"{len(items)} items"
        )
    failures = sorted(
        {a["error"] for e in executions for a in e.get("answers", []) if a.get("error")}
    )
    checks.check(
        "job ended completed",
        job["status"] == "completed",
        job["status"] + (f"; errors: {' | '.join(failures[:3])}" if failures else ""),
    )
    page = get(session, f"{base}/jobs/{job_id}")
    if page.status_code != 200:
        checks.check(
            "job page shows 3 model groups of 3 regions",
            False,
            f"not yet possible: GET /jobs/{job_id} answered HTTP {page.status_code}",
        )
    else:
        groups = model_groups(page.text)
        shown = {m: sorted(r) for m, r in groups.items()}
        checks.check(
            "job page shows 3 model groups of 3 regions",
            set(groups) == set(models) and all(groups[m] == set(regions) for m in models),
            json.dumps(shown),
        )
    print(f"{'FAIL' if checks.failed else 'PASS'}: {len(checks.failed)} check(s) failed")
    return 1 if checks.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the portal's base URL, e.g. https://beacon.example")
    parser.add_argument("--key-file", type=Path, help="file with the base64 seed")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for the job (900)"
    )
    args = parser.parse_args(argv)
    return verify(args.url.rstrip("/"), load_seed(args.key_file), args.timeout)


if __name__ == "__main__":
    sys.exit(main())
