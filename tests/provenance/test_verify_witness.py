"""The verifier's witness checks (--witness, --witness-quorum) on a live portal that asks its
configured witnesses to cosign (SPEC section 9, "Witnesses"): the tests' own tlog-witness
(tests/support/witness_server.py) and, in the last test, aics-witness, written by others.
Online and in the audit against `?cosigned=1`, offline from the evidence file the portal
serves. A rolled-back log is refused by the witnesses and counted, while its jobs complete.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import requests

from tests.support.aics_witness import aics_witness
from tests.support.apps import spec_3x3
from tests.support.c2sp import COSIGNATURE_V1, ED25519, Signer, Vkey, cosignatures
from tests.support.live_server import wait_until
from tests.support.verify_portal import (
    ORIGIN,
    PUBLIC_KEY,
    metric,
    running_portal,
    submit_and_wait,
    verify,
    wait_for_cosigned,
)
from tests.support.witness_server import Witness, serving

pytestmark = pytest.mark.live

LOG_KEY = Vkey(ORIGIN, ED25519, base64.b64decode(PUBLIC_KEY))


def failed_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def test_verifier_requires_a_quorum_of_known_witnesses(tmp_path, database_url, signer):
    first = Witness("witness.test/one", {ORIGIN: [LOG_KEY]})
    second = Witness("witness.test/two", {ORIGIN: [LOG_KEY]})
    never = Signer("witness.test/never").vkey(COSIGNATURE_V1)  # given, but never cosigns
    names = {"witness.test/one", "witness.test/two"}
    with serving(first) as one, serving(second) as two:
        witnesses = [(one, first.vkey.text()), (two, second.vkey.text())]
        with running_portal(tmp_path, database_url, signer, witnesses) as (server, database):
            url = server.url
            job = submit_and_wait(url, signer, spec_3x3(questions=["identity_basic"]))
            execution = str(job["executions"][0]["id"])
            served = wait_for_cosigned(url, 9, names)
            assert cosignatures(served["note"], [first.vkey, second.vkey]) == served["witnessed"]
            online = ["--portal", url, "--execution", execution]
            keys = ["--witness", first.vkey.text(), "--witness", second.vkey.text()]
            code, out = verify(tmp_path, *online, *keys)
            assert code == 0, out
            assert "PASS witness quorum: 2 of 2 given witness(es) cosigned" in out

            # An unknown witness counts for nothing, whatever else cosigned.
            code, out = verify(tmp_path, *online, "--witness", never.text())
            assert failed_lines(out) == [
                "FAIL witness quorum: 0 of 1 given witness(es) cosigned the checkpoint of size "
                "9; 1 required"
            ], out
            code, out = verify(tmp_path, *online, *keys, "--witness", never.text())
            assert code != 0 and "2 of 3 given witness(es)" in out
            code, out = verify(
                tmp_path, *online, *keys, "--witness", never.text(), "--witness-quorum", "2"
            )
            assert code == 0, out
            code, out = verify(tmp_path, "--audit", "--portal", url, *keys)
            assert code == 0 and "PASS witness quorum: 2 of 2" in out, out

            # The log is rolled back to 0 entries and regrown by a new job: the job completes,
            # both witnesses refuse the other tree of size 9 (they hold 9 with another root),
            # and the portal counts it; ?cosigned=1 serves no cosignature of the new tree.
            database.run("DELETE FROM receipts")
            database.shift_ends(job["id"], -timedelta(hours=2))  # out of the sweep's reach
            database.rebuild_log()
            again = submit_and_wait(url, signer, spec_3x3(questions=["math_basic"]))
            assert again["status"] == "completed"

            def counted(name: str) -> float:
                return metric(url, "beacon_witness_failures_total", witness=name)

            wait_until(lambda: all(counted(n) >= 1 for n in names), 60, 0.5, "both refusals")
            doc = requests.get(f"{url}/api/v1/log/checkpoint?cosigned=1", timeout=10).json()
            assert doc["size"] == 9 and doc["witnessed"] == {}
            code, out = verify(tmp_path, "--audit", "--portal", url, *keys)
            assert "FAIL witness quorum: 0 of 2" in out, out


def test_evidence_file_with_a_cosigned_checkpoint_verifies_offline(tmp_path, database_url, signer):
    witness = Witness("witness.test/offline", {ORIGIN: [LOG_KEY]})
    with serving(witness) as witness_url:
        witnesses = [(witness_url, witness.vkey.text())]
        with running_portal(tmp_path, database_url, signer, witnesses) as (server, _):
            job = submit_and_wait(server.url, signer, spec_3x3(questions=["math_basic"]))
            wait_for_cosigned(server.url, 9, {"witness.test/offline"})
            response = requests.get(f"{server.url}/api/v1/jobs/{job['id']}/evidence", timeout=30)
            evidence = response.json()
            server.stop()
    note = evidence["checkpoint"]["note"]
    assert set(evidence["checkpoint"]["witnessed"]) == {"witness.test/offline"}
    (tmp_path / "cosigned.json").write_text(json.dumps(evidence))
    offline = ["--evidence", "cosigned.json", "--witness", witness.vkey.text()]
    code, out = verify(tmp_path, *offline)
    assert code == 0 and "PASS witness quorum: 1 of 1" in out, out

    # The cosignature's timestamp moved by one second: the signature no longer verifies.
    text, line = note.rsplit("\u2014 witness.test/offline ", 1)
    raw = bytearray(base64.b64decode(line.strip()))
    raw[11] ^= 1
    evidence["checkpoint"]["note"] = (
        f"{text}\u2014 witness.test/offline {base64.b64encode(bytes(raw)).decode()}\n"
    )
    (tmp_path / "moved.json").write_text(json.dumps(evidence))
    code, out = verify(tmp_path, "--evidence", "moved.json", *offline[2:])
    assert failed_lines(out) == [
        "FAIL witness quorum: 0 of 1 given witness(es) cosigned the checkpoint of size 9; "
        "1 required"
    ], out

    # A log-style (type 0x01) key is not a witness key: refused before any check.
    code, out = verify(tmp_path, "--evidence", "cosigned.json", "--witness", LOG_KEY.text())
    assert code == 2 and "type 0x04" in out


def test_the_portal_is_cosigned_by_aics_witness(tmp_path, database_url, signer):
    """Interoperability with a tlog-witness written by others (skipped loudly without it)."""
    with aics_witness(tmp_path / "aics", "witness.test/aics", {ORIGIN: LOG_KEY}) as (url, vkey):
        with running_portal(tmp_path, database_url, signer, [(url, vkey.text())]) as (server, _):
            first = submit_and_wait(server.url, signer, spec_3x3(questions=["identity_basic"]))
            wait_for_cosigned(server.url, 9, {"witness.test/aics"})
            submit_and_wait(server.url, signer, spec_3x3(questions=["math_basic"]))
            # From 9 to 18 with the portal's consistency proof.
            doc = wait_for_cosigned(server.url, 18, {"witness.test/aics"})
            assert set(cosignatures(doc["note"], [vkey])) == {"witness.test/aics"}
            execution = str(first["executions"][0]["id"])
            code, out = verify(
                tmp_path, "--portal", server.url, "--execution", execution, "--witness", vkey.text()
            )
            assert code == 0 and "PASS witness quorum: 1 of 1" in out, out
