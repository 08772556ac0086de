"""The verifier's witness checks (--witness, --witness-quorum) on a live portal's checkpoints,
cosigned by the tests' own tlog-witness: online and in the audit through a proxy that serves
what the portal's witness side will serve (tests/support/cosigning_proxy.py), and offline from
an evidence file whose checkpoint note carries the cosignature lines.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.support.apps import spec_3x3
from tests.support.c2sp import COSIGNATURE_V1, ED25519, Signer, Vkey, add_checkpoint_body, post
from tests.support.cosigning_proxy import cosigning_proxy
from tests.support.verify_portal import ORIGIN, PUBLIC_KEY, running_portal, submit_and_wait, verify
from tests.support.witness_server import Witness, serving

pytestmark = pytest.mark.live


@pytest.fixture
def portal(tmp_path, database_url, signer):
    with running_portal(tmp_path, database_url, signer) as pair:
        yield pair


def failed_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def test_verifier_requires_a_quorum_of_known_witnesses(portal, tmp_path, signer):
    server, _ = portal
    log_key = Vkey(ORIGIN, ED25519, base64.b64decode(PUBLIC_KEY))
    first = Witness("witness.test/one", {ORIGIN: [log_key]})
    second = Witness("witness.test/two", {ORIGIN: [log_key]})
    never = Signer("witness.test/never").vkey(COSIGNATURE_V1)  # given, but never cosigns
    job = submit_and_wait(server.url, signer, spec_3x3(questions=["identity_basic"]))
    execution = str(job["executions"][0]["id"])
    with serving(first) as one, serving(second) as two:
        with cosigning_proxy(server.url, [(one, first.vkey), (two, second.vkey)]) as proxy:
            served = requests.get(f"{proxy}/api/v1/log/checkpoint?cosigned=1", timeout=30).json()
            assert set(served["witnessed"]) == {"witness.test/one", "witness.test/two"}
            online = ["--portal", proxy, "--execution", execution]
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

            code, out = verify(tmp_path, "--audit", "--portal", proxy, *keys)
            assert code == 0 and "PASS witness quorum: 2 of 2" in out, out
        # The portal alone serves no cosignature: the same audit fails.
        code, out = verify(tmp_path, "--audit", "--portal", server.url, *keys)
        assert code != 0, out


def test_evidence_file_with_a_cosigned_checkpoint_verifies_offline(portal, tmp_path, signer):
    server, _ = portal
    log_key = Vkey(ORIGIN, ED25519, base64.b64decode(PUBLIC_KEY))
    witness = Witness("witness.test/offline", {ORIGIN: [log_key]})
    job = submit_and_wait(server.url, signer, spec_3x3(questions=["math_basic"]))
    evidence = requests.get(f"{server.url}/api/v1/jobs/{job['id']}/evidence", timeout=30).json()
    with serving(witness) as url:
        note = evidence["checkpoint"]["note"]
        line = post(f"{url}/add-checkpoint", add_checkpoint_body(0, [], note))
    server.stop()
    evidence["checkpoint"]["note"] = note + line
    (tmp_path / "cosigned.json").write_text(json.dumps(evidence))
    offline = ["--evidence", "cosigned.json", "--witness", witness.vkey.text()]
    code, out = verify(tmp_path, *offline)
    assert code == 0 and "PASS witness quorum: 1 of 1" in out, out

    # The cosignature's timestamp moved by one second: the signature no longer verifies.
    name, blob = line.rstrip("\n").split(" ")[1:]
    raw = bytearray(base64.b64decode(blob))
    raw[11] ^= 1
    moved = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    evidence["checkpoint"]["note"] = note + moved
    (tmp_path / "moved.json").write_text(json.dumps(evidence))
    code, out = verify(tmp_path, "--evidence", "moved.json", *offline[2:])
    assert failed_lines(out) == [
        "FAIL witness quorum: 0 of 1 given witness(es) cosigned the checkpoint of size 9; "
        "1 required"
    ], out

    # A log-style (type 0x01) key is not a witness key: refused before any check.
    code, out = verify(tmp_path, "--evidence", "cosigned.json", "--witness", log_key.text())
    assert code == 2 and "type 0x04" in out
