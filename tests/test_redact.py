"""The secret set (portal/redact.py `Secrets`): every form of every secret the portal knows is
hidden in provider text, in log records (messages, arguments, tracebacks) and, with `flask
beacon redact`, in rows stored before the portal hid them (issue 20, item 2)."""

from __future__ import annotations

import base64
import io
import logging
import secrets
from urllib.parse import quote

from sqlalchemy import select

# The one place this file names the portal's modules.
from portal import logs, redact
from portal.db import db
from portal.models import Answer, Execution
from tests.support.apps import THREE_REGIONS, spec_3x3
from tests.support.jobs import finish

KEY = f"sk-{secrets.token_hex(24)}"


def test_every_form_and_any_fragment_of_a_secret_is_hidden(monkeypatch):
    monkeypatch.setenv("REDACT_TEST_KEY", KEY)
    known = redact.Secrets()
    known.add_env("REDACT_TEST_KEY")
    seed = secrets.token_bytes(32)
    known.add(seed)
    known.add_url("http://svc:PassW0rd%21@10.0.0.1/v1?api_key=KEY123abc")
    known.add("short")  # under MIN_CHARS: not a secret, never hidden
    text = (
        f"401: Bearer {KEY}; clipped {KEY[:19]}…; middle {KEY[10:30]}; url {quote(KEY)}; "
        f'json "{KEY}"; seed {base64.b64encode(seed).decode()} {seed.hex()}; '
        "auth svc:PassW0rd! key=KEY123abc; a short word"
    )
    scrubbed = known.scrub(text)
    for shown in (KEY[:8], KEY[-8:], seed.hex()[:8], "PassW0rd", "KEY123abc"):
        assert shown not in scrubbed, scrubbed
    assert scrubbed.startswith("401: Bearer ***; clipped ***…; middle ***;"), scrubbed
    assert "a short word" in scrubbed
    # A key read from the environment when the text is scrubbed: the one providers send now.
    rotated = f"sk-{secrets.token_hex(24)}"
    monkeypatch.setenv("REDACT_TEST_KEY", rotated)
    assert known.scrub(f"echo {rotated}") == "echo ***"
    assert known.scrub_value({"headers": {"x-request-id": rotated}}) == {
        "headers": {"x-request-id": "***"}
    }


def test_log_records_are_scrubbed_in_message_arguments_and_tracebacks(monkeypatch):
    monkeypatch.setenv("REDACT_TEST_KEY", KEY)
    known = redact.Secrets()
    known.add_env("REDACT_TEST_KEY")
    stream = io.StringIO()
    for env in ("development", "production"):
        logs.configure(env, known)
        handler = next(
            h for h in logging.getLogger().handlers if isinstance(h, logs._BeaconHandler)
        )
        handler.setStream(stream)
        log = logging.getLogger("portal.test_redact")
        log.warning("provider said %s", f"bad key {KEY}")
        try:
            raise RuntimeError(f"echoed {KEY}")
        except RuntimeError:
            log.exception("call failed")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logs._BeaconHandler)]:
        root.removeHandler(handler)
    written = stream.getvalue()
    assert written.count("bad key ***") == 2 and written.count("echoed ***") == 2, written
    assert KEY[:12] not in written and KEY[-12:] not in written


def test_the_redact_command_hides_secrets_in_rows_stored_before(make_app, signer, monkeypatch):
    # us-east's key in the three-regions configuration.
    monkeypatch.setenv("US_EAST_API_KEY", KEY)
    app = make_app(BEACON_CONFIG=str(THREE_REGIONS))
    client = app.test_client()
    body = signer.body(spec_3x3(questions=["identity_basic"]))
    job = client.post("/api/v1/jobs", data=body, content_type="application/json").json["job"]
    finish(app, job["id"], lambda model, region, q: RuntimeError(f"HTTP 401: Bearer {KEY}"))
    with app.app_context():
        execution = db.session.scalars(select(Execution)).first()
        execution.error = f"1 of 1 answers failed: {KEY}"
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["beacon", "redact"])
    assert result.exit_code == 0, result.output
    assert "answers.error: 9 value(s)" in result.output, result.output
    with app.app_context():
        stored = [
            *db.session.scalars(select(Answer.error)),
            *db.session.scalars(select(Execution.error)),
        ]
    assert stored and not [e for e in stored if e and KEY[:12] in e], stored
    assert "HTTP 401: Bearer ***" in stored
