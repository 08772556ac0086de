"""Command line: `flask beacon keygen | sign FILE | verify FILE | worker | demo | redact`, and the
`regions`, `questions` and `witness` groups."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import gevent
import gevent.event
from flask import Flask, current_app
from flask.cli import AppGroup
from gevent import monkey

from portal import settings
from portal.cli import judge as judge_cli
from portal.cli.provenance import backfill_receipts_command
from portal.cli.questions import questions_group
from portal.cli.recompare import recompare_command
from portal.cli.redact import redact_command
from portal.cli.regions import regions_group
from portal.cli.witness import witness as witness_group
from portal.db import db
from portal.engine import pool
from portal.engine.jobs import load_job
from portal.errors import DomainError
from portal.intake import signing, trust
from portal.intake import submit as intake
from portal.intake.jobspec import unwrap
from portal.models import answer_counts
from portal.status import JobStatus, RunStatus
from portal.times import iso, utcnow
from portal.watch import loop

beacon = AppGroup("beacon", help="Beacon portal commands.")
# The demo waits this long past a job's deadline for the engine to record its end.
_GRACE = timedelta(seconds=30)


def register(app: Flask) -> None:
    """Adds the `beacon` command group to the app."""

    beacon.add_command(recompare_command)
    beacon.add_command(backfill_receipts_command)
    beacon.add_command(redact_command)
    beacon.add_command(judge_cli.judge_command)
    beacon.add_command(judge_cli.judge_agreement_command)
    beacon.add_command(witness_group)
    beacon.add_command(regions_group)
    beacon.add_command(questions_group)
    app.cli.add_command(beacon)


@beacon.command("keygen")
def keygen_command():
    """Prints a new Ed25519 key pair and the environment lines that use it."""
    seed = signing.generate_seed()
    public = signing.public_key_b64(seed)
    click.echo(
        f"# private seed: keep it secret\nexport BEACON_USER_KEY={base64.b64encode(seed).decode()}"
    )
    click.echo(f"# public key: give it to the portal operator\n# public_key: {public}")
    click.echo("# on the portal, trust it with:")
    entry = [{"kid": "me", "public_key": public, "status": "active"}]
    click.echo(f"export BEACON_TRUSTED_KEYS='{json.dumps(entry)}'")


@beacon.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="file holding the base64 seed (default: $BEACON_USER_KEY, else the portal key)",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="set metadata.nonce and metadata.timestamp to new values before signing",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here instead of standard output",
)
def sign_command(file: Path, key_file: Path | None, fresh: bool, output: Path | None):
    """Signs a JobSpec with beacon-jcs-v1 and prints it."""
    spec = _read_spec(file)
    if fresh:
        metadata = spec.setdefault("metadata", {})
        metadata["nonce"] = secrets.token_urlsafe(12)
        metadata["timestamp"] = iso(utcnow(), "seconds")
    # created_at is signed by beacon-jcs-v1 but stripped by legacy-c2, so a spec that carries it
    # can never also verify as legacy-c2 with an id or empty keys added (docs/signing.md).
    spec.setdefault("created_at", _now_iso())
    signed = signing.sign(spec, _seed(key_file))
    text = json.dumps(signed, indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, "utf-8")
        click.echo(f"signed {file} -> {output} with key {signed['public_key']}", err=True)
    else:
        click.echo(text, nl=False)


@beacon.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_command(file: Path):
    """Says which scheme verifies a signed JobSpec and whether its key is trusted here."""

    try:
        spec = unwrap(signing.load_json(file.read_bytes()))
        verified = signing.verify(spec, allow_legacy=True)
    except (ValueError, DomainError, signing.SignatureError) as exc:
        message = getattr(exc, "message", exc)
        raise click.ClickException(f"{file}: does not verify: {message}") from None
    s = settings.current()
    click.echo(f"{file}: verifies under {verified.scheme}; spec_hash {verified.spec_hash}")
    if verified.scheme != "beacon-jcs-v1" and not s.config.intake.legacy_signatures:
        click.echo("  note: legacy signatures are switched off in this portal's configuration")
    # The trust list is this shell's: a running server checks the one in its own environment.
    click.echo(f"  trust list checked: {_trust_source(s)}")
    try:
        key = trust.check_trust(
            verified.public_key, s.trusted_keys, s.portal_public_key, datetime.now(UTC)
        )
        click.echo(f"  key {verified.public_key} is trusted here (kid {key.kid})")
    except trust.TrustError as exc:
        click.echo(f"  key {verified.public_key} is NOT trusted here: {exc.code}: {exc.message}")
        click.echo(
            "  (a running portal checks the BEACON_TRUSTED_KEYS of its own shell: give both "
            "shells the same value to get the same answer)"
        )
        sys.exit(3)


def _trust_source(s: settings.Settings) -> str:
    """Says whose trust list `verify` read: this shell's variable and the portal's own key."""

    listed = trust.describe(s.trusted_keys, None) or "empty"
    if os.environ.get("BEACON_SIGNING_KEY"):
        portal = "BEACON_SIGNING_KEY"
    else:
        portal = str(Path(current_app.instance_path) / "portal_signing_key")
    return (
        f"this shell's BEACON_TRUSTED_KEYS ({listed}) and the portal key "
        f"{s.portal_public_key[:8]}… from {portal}"
    )


def _now_iso() -> str:
    return iso(utcnow(), "seconds")


def _read_spec(file: Path) -> dict:
    try:
        spec = signing.load_json(file.read_bytes())
    except ValueError as exc:
        raise click.ClickException(f"{file}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise click.ClickException(f"{file}: a JobSpec must be a JSON object")
    spec.pop("signature", None)
    spec.pop("public_key", None)
    return spec


def _seed(key_file: Path | None) -> bytes:

    raw = key_file.read_text().strip() if key_file else os.environ.get("BEACON_USER_KEY")
    if not raw:
        click.echo(
            "warning: BEACON_USER_KEY is not set and no --key-file was given: signing with this "
            "portal's own key, which only this portal (and its instance folder) trusts",
            err=True,
        )
        return settings.current().signing_seed
    try:
        return signing.decode_seed(raw)
    except ValueError as exc:
        raise click.ClickException(f"bad signing key: {exc}") from None


@beacon.command("worker")
def worker_command():
    """Runs the execution dispatcher and the watcher (schedules, changes, webhooks) in the
    foreground until interrupted or terminated."""

    if not monkey.is_module_patched("socket"):
        raise click.ClickException(
            "the worker needs gevent's monkey-patching before the app loads: run it as "
            "`flask --app wsgi beacon worker`"
        )
    app = current_app._get_current_object()
    dispatcher = pool.Dispatcher(app).start()
    watcher = loop.start_watcher(app)
    s = settings.current()
    click.echo(f"trusted keys: {trust.describe(s.trusted_keys, s.portal_public_key)}", err=True)
    submission = "on" if watcher.schedules_on else "off (BEACON_SCHEDULER=0)"
    click.echo(
        f"watcher: {len(watcher.config.schedules)} schedule(s), submission {submission}", err=True
    )
    click.echo(
        f"worker {dispatcher.owner}: pool {dispatcher.pool.size}, "
        f"lease {dispatcher.config.execution.lease_s:g} s; stop with Ctrl-C",
        err=True,
    )
    stopped = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopped.set)
    stopped.wait()
    # SIGTERM drains: calls in flight finish (within the graceful timeout) and store their
    # answers, the rest goes back to the queue. Keep the platform's kill delay longer.
    graceful = float(os.environ.get("BEACON_GRACEFUL_TIMEOUT", "20"))
    click.echo(f"worker {dispatcher.owner}: draining (up to {graceful:g} s)", err=True)
    watcher.stop(timeout=1.0)
    dispatcher.stop(timeout=max(0.0, graceful - 3.0))
    click.echo(f"worker {dispatcher.owner}: stopped", err=True)


@beacon.command("demo")
@click.option(
    "--inline",
    is_flag=True,
    help="run the engine in this process, for when no server is running",
)
@click.option(
    "--base-url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="where the portal's pages are served",
)
@click.option(
    "--question",
    "questions",
    multiple=True,
    metavar="ID",
    help="ask only this question of the bank (repeatable; default: every question)",
)
@click.option(
    "--languages",
    default="",
    metavar="TAGS",
    help="ask each question in these languages it has, comma-separated (e.g. en,zh)",
)
def demo_command(inline: bool, base_url: str, questions: tuple[str, ...], languages: str):
    """Submits a job of every default question, the default models and every region; follows it."""

    s = settings.current()
    config = s.config
    spec = {
        "version": "v1",
        "benchmark": {
            "name": "demo",
            "description": "Every default question, the default models, every region.",
            "input": {"type": "prompt", "data": {"prompt": "Who are you?"}},
        },
        "constraints": {"regions": list(config.regions)},
        "metadata": {
            "models": [m.id for m in config.default_models()],
            "nonce": secrets.token_urlsafe(12),
            "timestamp": iso(utcnow(), "seconds"),
        },
        "questions": list(questions) or list(config.questions),
        "runs": 1,
    }
    tags = [tag.strip() for tag in languages.split(",") if tag.strip()]
    if tags:
        spec["languages"] = tags
    signed = json.dumps(signing.sign(spec, s.signing_seed))
    ctx = intake.IntakeContext(config, s.trusted_keys, s.portal_public_key)
    try:
        job, _ = intake.submit_jobspec(signed, ctx, source="cli")
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    job_id, job_pk, deadline = job.id, job.pk, job.deadline_at
    asked = job.to_dict(counts={})["languages"]
    click.echo(
        f"submitted job {job_id}: {len(job.models)} model(s) x {len(job.regions)} regions x "
        f"{len(job.questions)} questions in {', '.join(asked)} ({config.source})"
    )
    dispatcher = None
    if inline:
        if not monkey.is_module_patched("socket"):
            raise click.ClickException("--inline needs `flask --app wsgi beacon demo`")
        dispatcher = pool.Dispatcher(current_app._get_current_object()).start()
    shown, started_at, hinted = None, time.monotonic(), False
    try:
        while True:
            db_job = _fresh_job(job_id)
            counts = answer_counts([job_pk])[job_pk]
            line = (
                f"  {db_job.status}: {counts['completed']} completed, {counts['failed']} failed, "
                f"{counts['running']} running, {counts['queued']} queued of {counts['total']}"
            )
            if line != shown:
                click.echo(line)
                shown = line
            if db_job.ended:
                break
            idle = counts[RunStatus.QUEUED] == counts["total"] and db_job.status == JobStatus.QUEUED
            if not inline and not hinted and idle and time.monotonic() - started_at > 15:
                click.echo(
                    "  nothing has started yet: is the portal running (./scripts/serve.sh)? "
                    "Without a server, use --inline."
                )
                hinted = True
            if deadline is not None and datetime.now(UTC) > deadline + _GRACE:
                raise click.ClickException(
                    f"job {job_id} is still {db_job.status} past its deadline"
                )
            _sleep(1.0 if dispatcher is None else 0.5)
    finally:
        if dispatcher is not None:
            dispatcher.stop()
    _show_first_answers(job_id)
    click.echo(f"job {job_id} ended {db_job.status}. Look at it in the browser:")
    click.echo(f"  {base_url.rstrip('/')}/jobs/{job_id}")


def _show_first_answers(job_id: str, width: int = 160) -> None:
    """Prints what each region answered to the job's first question, one line per region."""
    job = _fresh_job(job_id)
    first = job.questions[0]
    click.echo(f"what each region answered to {first['id'] or first['prompt']!r}:")
    for execution in job.executions:
        # One line per language the question was asked in, its first run.
        firsts = [a for a in execution.answers if a.question_index == 0 and a.run == 1]
        for answer in firsts:
            said = " ".join((answer.output or "").split()) or f"({answer.status}: {answer.error})"
            said = said if len(said) <= width else said[: width - 1] + "…"
            where = f"{execution.model_id} @ {execution.region}"
            tag = f" [{answer.language}]" if len(firsts) > 1 else ""
            click.echo(f"  {where}{tag}: {said}")


def _fresh_job(job_id: str):

    job = load_job(job_id)
    db.session.commit()
    return job


def _sleep(seconds: float) -> None:

    # gevent.sleep yields to an inline dispatcher; without one it is a plain sleep.
    gevent.sleep(seconds)
