"""The portal asks witnesses to cosign (portal/provenance/cosigning.py), in-process: two witnesses
over real HTTP, the tests' independent one (tests/support/witness_server.py) and the portal's own
(`flask beacon witness serve`'s WSGI app), cosign its checkpoints as the log grows; the portal
keeps and serves their cosignatures, resynchronizes after a 409 it can resolve, serializes by a
lease, and counts every refusal of a rolled-back or forked log while its jobs still complete.

Every cosignature is checked with the tests' own C2SP code (tests/support/c2sp.py) and the keys
the test made, never with anything the portal serves.
"""

from __future__ import annotations

import base64
import os
from datetime import timedelta

import nacl.signing
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from portal.cli.witness import wsgi_app
from portal.db import db
from portal.provenance import cosigning, notes
from portal.provenance.witness import Witness as PortalWitness
from portal.provenance.witness import WitnessStore
from portal.provenance.witness_models import WitnessState
from portal.times import utcnow
from tests.support.apps import spec_3x3
from tests.support.c2sp import ED25519, Vkey, cosignatures, open_checkpoint
from tests.support.inline import run_inline
from tests.support.verify_portal import Database
from tests.support.witness_server import Witness, serving
from tests.support.workers import Engine, submit
from tests.support.wsgi_thread import serving_wsgi

SEED = bytes(range(5, 37))
ORIGIN = "beacon.test/cosigned"
LOG_KEY = Vkey(ORIGIN, ED25519, bytes(nacl.signing.SigningKey(SEED).verify_key))
INDEPENDENT = "witness.test/independent"
OURS = "witness.test/ours"


def failures(name: str) -> float:
    return REGISTRY.get_sample_value("beacon_witness_failures_total", {"witness": name}) or 0.0


class Setup:
    """The app, its two witnesses and their verifier keys, and direct database access."""

    def __init__(self, app, independent, ours, database):
        self.app, self.client = app, app.test_client()
        self.independent, self.ours, self.database = independent, ours, database
        self.keys = [independent.vkey, ours]

    def job(self, signer, question: str) -> str:
        job_id = submit(self.client, signer, spec_3x3(questions=[question]))
        run_inline(self.app)
        assert self.client.get(f"/api/v1/jobs/{job_id}").json["job"]["status"] == "completed"
        return job_id

    def round(self, owner: str = "test-process") -> dict[str, str]:
        return cosigning.Cosigner(self.app, owner).round()

    def checkpoint(self, **query) -> dict:
        doc = self.client.get("/api/v1/log/checkpoint", query_string=query).json
        checkpoint, _ = open_checkpoint(doc["note"], [LOG_KEY])
        assert (checkpoint.size, doc["size"]) == (doc["size"], checkpoint.size)
        return doc

    def ask_now(self) -> None:
        """Lifts the pause after refusals, so the next round asks at once."""
        with self.app.app_context():
            db.session.execute(update(WitnessState).values(retry_at=None))
            db.session.commit()


@pytest.fixture
def setup(tmp_path, database_url, make_app):
    engine = Engine(tmp_path, database_url)
    independent = Witness(INDEPENDENT, {ORIGIN: [LOG_KEY]})
    seed = os.urandom(32)
    store = WitnessStore(f"sqlite:///{tmp_path / 'ours.sqlite3'}")
    ours = PortalWitness(OURS, seed, [notes.Vkey.parse(LOG_KEY.text())], store)
    ours_vkey = Vkey.parse(ours.vkey.text())
    database = Database(database_url)
    try:
        with serving(independent) as one, serving_wsgi(wsgi_app(ours)) as two:
            providers = engine.three_providers()
            config = engine.config(
                {r: p.base_url_openai for r, p in providers.items()},
                witnesses=[(one, independent.vkey.text()), (two, ours_vkey.text())],
            )
            app = make_app(
                BEACON_CONFIG=str(config),
                BEACON_SIGNING_KEY=base64.b64encode(SEED).decode(),
                BEACON_LOG_ORIGIN=ORIGIN,
            )
            yield Setup(app, independent, ours_vkey, database)
    finally:
        database.engine.dispose()
        store.dispose()
        engine.close()


def test_witnesses_cosign_as_the_log_grows_and_the_portal_serves_it(setup, signer):
    first = setup.job(signer, "identity_basic")
    plain = setup.checkpoint()
    assert plain["witnessed"] == {} and plain["note"].count("\n\u2014 ") == 1
    assert setup.round() == {INDEPENDENT: "cosigned 9", OURS: "cosigned 9"}
    assert setup.round() == {INDEPENDENT: "up to date at 9", OURS: "up to date at 9"}

    doc = setup.checkpoint()
    # The portal's own note, byte for byte, then one line per witness.
    assert doc["note"].startswith(plain["note"]) and doc["note"].count("\n\u2014 ") == 3
    stamps = cosignatures(doc["note"], setup.keys)
    assert doc["witnessed"] == stamps and set(stamps) == {INDEPENDENT, OURS}

    # The log grows: ?cosigned=1 stays on 9 until the witnesses cosign 18 (from 9, with a
    # consistency proof); evidence is proved against a cosigned checkpoint when one holds the job.
    second = setup.job(signer, "math_basic")
    assert setup.checkpoint()["size"] == 18 and setup.checkpoint()["witnessed"] == {}
    assert setup.checkpoint(cosigned=1)["size"] == 9
    evidence = setup.client.get(f"/api/v1/jobs/{first}/evidence").json
    assert evidence["checkpoint"]["size"] == 9
    assert set(cosignatures(evidence["checkpoint"]["note"], setup.keys)) == {INDEPENDENT, OURS}
    assert {r["inclusion"]["size"] for r in evidence["receipts"]} == {9}
    assert setup.client.get(f"/api/v1/jobs/{second}/evidence").json["checkpoint"]["size"] == 18
    assert setup.round() == {INDEPENDENT: "cosigned 18", OURS: "cosigned 18"}
    cosigned = setup.checkpoint(cosigned=1)
    assert cosigned["size"] == 18 and set(cosignatures(cosigned["note"], setup.keys)) == {
        INDEPENDENT,
        OURS,
    }
    assert setup.client.get("/api/v1/log/checkpoint?cosigned=2").status_code == 400

    # One process at a time per witness: while another holds our witness's lease, we skip it.
    setup.job(signer, "geography_basic")
    with setup.app.app_context():
        db.session.execute(
            update(WitnessState)
            .where(WitnessState.name == OURS)
            .values(lease_owner="other", lease_expires_at=utcnow() + timedelta(seconds=30))
        )
        db.session.commit()
    assert setup.round() == {INDEPENDENT: "cosigned 27", OURS: "another process is asking it"}

    # The independent witness lost its state (size 0) and ours is asked from a size the
    # portal forgot: each answers 409 with its size and the portal proves from there.
    setup.independent.state.clear()
    with setup.app.app_context():
        db.session.execute(
            update(WitnessState)
            .where(WitnessState.name == OURS)
            .values(cosigned_size=0, cosigned_root=None, lease_expires_at=None)
        )
        db.session.commit()
    setup.job(signer, "tiananmen_neutral")
    assert setup.round() == {INDEPENDENT: "cosigned 36", OURS: "cosigned 36"}
    assert set(setup.checkpoint()["witnessed"]) == {INDEPENDENT, OURS}

    metrics = setup.client.get("/metrics").get_data(as_text=True)
    assert f'beacon_witness_cosigned_size{{witness="{OURS}"}} 36.0' in metrics
    assert "beacon_log_size 36.0" in metrics


def test_a_rolled_back_or_forked_log_is_refused_and_counted_while_jobs_complete(setup, signer):
    setup.job(signer, "identity_basic")
    setup.job(signer, "math_basic")
    assert setup.round() == {INDEPENDENT: "cosigned 18", OURS: "cosigned 18"}
    before = {name: failures(name) for name in (INDEPENDENT, OURS)}

    # Rolled back to 9 (and the stored tree rebuilt, so appends work): both witnesses hold
    # 18 and answer 409 with it; nothing can be proved from a larger tree.
    setup.database.run("DELETE FROM receipts WHERE log_index >= 9")
    setup.database.rebuild_log()
    answers = setup.round()
    for name in (INDEPENDENT, OURS):
        assert answers[name].startswith("refused: the witness holds size 18, larger than"), answers
        assert failures(name) == before[name] + 1

    # Forked: a new job regrows the log to 18 with other leaves. Its jobs complete; both
    # witnesses refuse the other root at the size they hold (422), counted again.
    third = setup.job(signer, "geography_basic")
    setup.ask_now()
    answers = setup.round()
    for name in (INDEPENDENT, OURS):
        assert answers[name].startswith("refused: 422"), answers
        assert failures(name) == before[name] + 2
    job = setup.client.get(f"/api/v1/jobs/{third}").json["job"]
    assert job["status"] == "completed" and setup.checkpoint()["size"] == 18
    # ... and from a larger forked tree: the proof from 18 fails (422).
    setup.job(signer, "taiwan_status")
    setup.ask_now()
    assert all(a.startswith("refused: 422") for a in setup.round().values())
    # No cosignature of the forked trees was kept: ?cosigned=1 falls back to the current one.
    doc = setup.checkpoint(cosigned=1)
    assert doc["size"] == 27 and doc["witnessed"] == {}
    with setup.app.app_context():
        rows = {r.name: r for r in db.session.scalars(select(WitnessState))}
        assert rows[OURS].failures == 3 and "422" in rows[OURS].last_error
        db.session.commit()
    metrics = setup.client.get("/metrics").get_data(as_text=True)
    assert f'beacon_witness_failures_total{{witness="{OURS}"}}' in metrics


def test_refusing_or_unreachable_witnesses_are_counted_and_never_hold_appends(
    tmp_path, database_url, make_app, signer
):
    engine = Engine(tmp_path, database_url)
    stranger = Witness("witness.test/stranger", {"beacon.test/other": [LOG_KEY]})  # 404
    distrustful = Witness(  # trusts another key for the origin: 403
        "witness.test/distrustful", {ORIGIN: [Vkey(ORIGIN, ED25519, bytes(32))]}
    )
    liar_key = Vkey.parse(notes.witness_vkey("witness.test/liar", os.urandom(32)).text())

    def liar(environ, start_response):  # 200 with a line that is no valid cosignature
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"\u2014 witness.test/liar {notes.b64(liar_key.id + bytes(72))}\n".encode()]

    def broken(environ, start_response):
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"down for maintenance\n"]

    broken_key = Vkey.parse(notes.witness_vkey("witness.test/broken", os.urandom(32)).text())
    gone_key = Vkey.parse(notes.witness_vkey("witness.test/gone", os.urandom(32)).text())
    try:
        with (
            serving(stranger) as one,
            serving(distrustful) as two,
            serving_wsgi(liar) as three,
            serving_wsgi(broken) as four,
        ):
            providers = engine.three_providers()
            witnesses = [
                (one, stranger.vkey.text()),
                (two, distrustful.vkey.text()),
                (three, liar_key.text()),
                (four, broken_key.text()),
                ("http://127.0.0.1:9", gone_key.text()),  # nothing listens there
            ]
            config = engine.config(
                {r: p.base_url_openai for r, p in providers.items()}, witnesses=witnesses
            )
            app = make_app(
                BEACON_CONFIG=str(config),
                BEACON_SIGNING_KEY=base64.b64encode(SEED).decode(),
                BEACON_LOG_ORIGIN=ORIGIN,
            )
            client = app.test_client()
            job_id = submit(client, signer, spec_3x3(questions=["identity_basic"]))
            run_inline(app)
            assert client.get(f"/api/v1/jobs/{job_id}").json["job"]["status"] == "completed"
            before = {vkey.split("+")[0]: failures(vkey.split("+")[0]) for _, vkey in witnesses}
            answers = cosigning.Cosigner(app, "test-process").round()
            assert answers["witness.test/stranger"].startswith("refused: 404")
            assert answers["witness.test/distrustful"].startswith("refused: 403")
            assert answers["witness.test/liar"] == (
                "refused: 200 without a valid cosignature by the witness's key"
            )
            assert answers["witness.test/broken"].startswith("refused: 503")
            assert answers["witness.test/gone"].startswith("refused: no answer from")
            for name, count in before.items():
                assert failures(name) == count + 1, name
            # Paused after a refusal, and the log goes on growing meanwhile.
            assert set(cosigning.Cosigner(app, "test-process").round().values()) == {
                "waiting to retry"
            }
            submit(client, signer, spec_3x3(questions=["math_basic"]))
            run_inline(app)
            doc = client.get("/api/v1/log/checkpoint?cosigned=1").json
            assert doc["size"] == 18 and doc["witnessed"] == {}
    finally:
        engine.close()
