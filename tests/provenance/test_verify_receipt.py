"""scripts/verify_receipt.py against a real portal (gunicorn, a dispatcher, loopback providers):
it passes a genuine receipt with an older checkpoint, and fails on every tampering the issue
names. The script runs in an isolated interpreter (`python -I`) from a folder outside the
repository, so it cannot lean on the portal's code.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import nacl.signing
import pytest
import requests

from tests.support.apps import spec_3x3
from tests.support.live_server import wait_until
from tests.support.verify_portal import (
    ORIGIN,
    metric,
    running_portal,
    submit_and_wait,
    verify,
    wait_for_receipt,
    wait_for_size,
)

pytestmark = pytest.mark.live


@pytest.fixture
def portal(tmp_path, database_url, signer):
    with running_portal(tmp_path, database_url, signer) as pair:
        yield pair


def test_verifier_passes_genuine_and_fails_every_tampering(portal, tmp_path, signer):
    server, database = portal
    url = server.url
    first = submit_and_wait(url, signer, spec_3x3(questions=["identity_basic", "math_basic"]))
    execution = first["executions"][0]["id"]
    online = ["--portal", url, "--execution", str(execution)]

    code, out = verify(tmp_path, *online, "--save-checkpoint", "old.json")
    assert code == 0, out
    assert "PASS receipt signature" in out and "PASS inclusion" in out
    assert json.loads((tmp_path / "old.json").read_text())["size"] == 9
    evidence = requests.get(f"{url}/api/v1/jobs/{first['id']}/evidence", timeout=10).json()
    (tmp_path / "evidence.json").write_text(json.dumps(evidence))

    submit_and_wait(url, signer, spec_3x3(questions=["geography_basic"]))
    code, out = verify(tmp_path, *online, "--old-checkpoint", "old.json")
    assert code == 0, out
    assert "PASS consistency: the tree of 18 extends the old tree of 9" in out

    # The public key given is not the portal's.
    other = base64.b64encode(bytes(nacl.signing.SigningKey(bytes(32)).verify_key)).decode()
    code, out = verify(tmp_path, *online, key=other)
    assert code != 0 and "FAIL receipt signature" in out and "FAIL checkpoint signature" in out

    # The old checkpoint was forged: another root under the old signature, or another key.
    old = json.loads((tmp_path / "old.json").read_text())
    fake_root = base64.b64encode(b"\x07" * 32).decode()
    forged = dict(old, root_hash=fake_root, note=old["note"].replace(old["root_hash"], fake_root))
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out = verify(tmp_path, *online, "--old-checkpoint", "forged.json")
    assert code != 0 and "FAIL old checkpoint signature" in out
    body = f"{ORIGIN}\n9\n{fake_root}\n"
    key = nacl.signing.SigningKey(bytes(32))
    stamp = merkle_key_stamp(ORIGIN, key, body)
    resigned = dict(forged, note=f"{body}\n\u2014 {ORIGIN} {stamp}\n")
    (tmp_path / "resigned.json").write_text(json.dumps(resigned))
    code, out = verify(tmp_path, *online, "--old-checkpoint", "resigned.json")
    assert code != 0 and "FAIL old checkpoint signature" in out

    # An answer's output was edited in the database.
    answer = first["executions"][0]["answers"][0]
    database.run("UPDATE answers SET output = :o WHERE id = :i", o="edited", i=answer["id"])
    code, out = verify(tmp_path, *online)
    assert code != 0 and f"FAIL output of answer {answer['id']}" in out
    database.run("UPDATE answers SET output = :o WHERE id = :i", o=answer["output"], i=answer["id"])
    assert verify(tmp_path, *online)[0] == 0

    # Two log rows were swapped.
    second = first["executions"][1]["id"]
    rows = dict(database.run("SELECT execution_id, log_index FROM receipts"))
    swap = "UPDATE receipts SET log_index = :n WHERE execution_id = :e"
    database.run(swap, n=-1, e=execution)
    database.run(swap, n=rows[execution], e=second)
    database.run(swap, n=rows[second], e=execution)
    code, out = verify(tmp_path, *online)
    assert code != 0 and "FAIL inclusion" in out, out
    database.run(swap, n=-1, e=execution)
    database.run(swap, n=rows[second], e=second)
    database.run(swap, n=rows[execution], e=execution)
    assert verify(tmp_path, *online)[0] == 0

    # A log row was deleted. The dispatchers' catch-up sweep issues that receipt again at the
    # end of the log (waited for here, so the outcome does not hang on the sweep's timing):
    # this receipt's own check then passes, the audit names the gap, and covering the gap up
    # breaks consistency with the old checkpoint.
    removed = rows[execution]
    database.run("DELETE FROM receipts WHERE execution_id = :e", e=execution)
    reissued = wait_for_receipt(url, execution, lambda index: index != removed)
    code, out = verify(tmp_path, *online)
    assert code == 0 and f"PASS inclusion: entry {reissued} is in" in out, out
    code, out = verify(tmp_path, "--audit", "--portal", url)
    assert code != 0 and f"FAIL entries: index {removed} is missing" in out, out
    # Shifted through negative numbers: log_index stays unique after every row's update.
    database.run("UPDATE receipts SET log_index = -log_index WHERE log_index > :k", k=removed)
    database.run("UPDATE receipts SET log_index = -log_index - 1 WHERE log_index < 0")
    database.rebuild_log()
    later = ["--portal", url, "--execution", str(first["executions"][-1]["id"])]
    code, out = verify(tmp_path, *later, "--old-checkpoint", "old.json")
    assert code != 0 and "FAIL consistency" in out

    # The evidence file verifies offline once the portal is stopped.
    server.stop()
    code, out = verify(tmp_path, "--evidence", "evidence.json")
    assert code == 0, out
    assert out.count("PASS inclusion") == 9 and "PASS spec hash" in out
    evidence["executions"][0]["answers"][0]["output"] = "edited"
    (tmp_path / "edited.json").write_text(json.dumps(evidence))
    code, out = verify(tmp_path, "--evidence", "edited.json")
    assert code != 0 and "FAIL output of answer" in out


def merkle_key_stamp(origin: str, key: nacl.signing.SigningKey, body: str) -> str:
    """Returns the base64 of key hash || signature for a signed-note line."""
    key_hash = hashlib.sha256(origin.encode() + b"\n\x01" + bytes(key.verify_key)).digest()[:4]
    return base64.b64encode(key_hash + key.sign(body.encode()).signature).decode()


def audit(tmp_path: Path, url: str, *args: str) -> tuple[int, str]:
    """Runs the verifier's audit of the whole log, a few entries per request."""
    return verify(tmp_path, "--audit", "--portal", url, "--page-size", "4", *args)


def test_audit_passes_a_clean_log_and_names_a_deleted_or_extra_index(portal, tmp_path, signer):
    server, database = portal
    url = server.url
    for question in ("identity_basic", "math_basic", "geography_basic"):
        submit_and_wait(url, signer, spec_3x3(questions=[question]))
    code, out = audit(tmp_path, url, "--state", "state.json")
    assert code == 0, out
    assert "PASS entries: indices 0 to 26 are each served once" in out
    assert "PASS root: the tree rebuilt from the 27 entries has the checkpoint's root" in out
    assert "PASS executions: every one of the 27 ended executions has a receipt" in out
    assert "NOTE state: state.json does not exist yet" in out
    assert json.loads((tmp_path / "state.json").read_text())["size"] == 27

    # One row deleted: the catch-up sweep issues that receipt again at index 27 (waited for,
    # so the outcome does not hang on its timing); the audit still names the gap.
    (execution,) = database.run("SELECT execution_id FROM receipts WHERE log_index = 5")[0]
    database.run("DELETE FROM receipts WHERE log_index = 5")
    assert wait_for_receipt(url, execution, lambda index: index != 5) == 27
    code, out = audit(tmp_path, url, "--state", "state.json")
    assert code != 0
    assert "FAIL entries: index 5 is missing" in out
    assert "FAIL root: cannot rebuild the tree: 1 entries missing" in out
    assert "PASS executions" in out and "PASS consistency" in out
    assert json.loads((tmp_path / "state.json").read_text())["size"] == 27  # kept: it failed

    # A row beyond the log's tree, copied from another: an index no checkpoint covers.
    database.run(
        "INSERT INTO receipts (execution_id, seq, log_index, body, signature, ended_at, "
        "issued_at, late) SELECT execution_id, 99, 1000, body, signature, ended_at, issued_at, "
        "late FROM receipts WHERE log_index = 0"
    )
    code, out = audit(tmp_path, url)
    assert code != 0 and "index 1000 is served beyond the log's size 28" in out, out
    assert "index 1000 repeats the receipt of index 0" in out


def test_audit_catches_a_rollback_against_its_saved_state(portal, tmp_path, signer):
    server, database = portal
    url = server.url
    submit_and_wait(url, signer, spec_3x3(questions=["identity_basic"]))
    assert audit(tmp_path, url, "--state", "state.json")[0] == 0
    second = submit_and_wait(url, signer, spec_3x3(questions=["math_basic"]))
    code, out = audit(tmp_path, url, "--state", "state.json")
    assert code == 0 and "PASS consistency: the tree of 18 extends the old tree of 9" in out, out
    assert json.loads((tmp_path / "state.json").read_text())["size"] == 18

    # The second job's receipts are deleted and the log head rolled back to 9. Its ends are
    # moved two hours back first, out of the catch-up sweep's one-hour reach, so nothing is
    # issued again while the test looks.
    database.shift_ends(second["id"], -timedelta(hours=2))
    database.run("DELETE FROM receipts WHERE log_index >= 9")
    database.rebuild_log()
    code, out = audit(tmp_path, url, "--state", "state.json")
    assert code != 0
    assert "PASS entries: indices 0 to 8 are each served once" in out and "PASS root" in out
    assert "FAIL consistency: the tree of 9 is smaller than the old tree of 18" in out, out
    assert json.loads((tmp_path / "state.json").read_text())["size"] == 18

    # The ends come back into reach: the sweep issues the nine receipts again, the log is back
    # at 18 entries, and only the root differs from the one the monitor kept.
    database.shift_ends(second["id"], timedelta(hours=2))
    wait_for_size(url, 18)
    code, out = audit(tmp_path, url, "--state", "state.json")
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert code != 0 and failed == [
        "FAIL consistency: the tree of 18 has a different root from the old tree of the same size"
    ], out

    # Issue 24's rollback: the newest entries deleted and the head moved back to 9, the stored
    # nodes left, so every append meets the log's unique constraint. A new job still ends, its
    # receipts wait, /ready names the log once they waited over a minute (its ends are moved
    # two minutes back rather than waited for), /metrics counts, and the audit fails.
    database.shift_ends(second["id"], -timedelta(hours=2))
    database.roll_back_head(9)
    third = submit_and_wait(url, signer, spec_3x3(questions=["geography_basic"]))
    assert third["status"] == "completed", third
    execution = third["executions"][0]["id"]
    assert (
        requests.get(f"{url}/api/v1/executions/{execution}/receipt", timeout=10).status_code == 404
    )
    database.shift_ends(third["id"], -timedelta(minutes=2))
    ready = requests.get(f"{url}/ready", timeout=10)
    assert ready.status_code == 503, ready.text
    assert ready.json()["log"].startswith("9 receipt(s) waiting, the oldest since "), ready.text
    assert "the transparency log takes no appends" in ready.json()["error"]["message"]
    assert metric(url, "beacon_log_append_failures_total") >= 9
    assert metric(url, "beacon_receipts_waiting") == 9
    code, out = audit(tmp_path, url, "--state", "state.json")
    assert code != 0 and "FAIL consistency: the tree of 9 is smaller than the old tree of 18" in out

    # Repaired (the stored tree rebuilt from the entries left): the sweep appends the waiting
    # receipts, /ready answers 200 again, and the audit still sees the rewritten history.
    database.rebuild_log()
    wait_for_size(url, 18)
    wait_until(lambda: requests.get(f"{url}/ready", timeout=10).status_code == 200, 30)
    assert metric(url, "beacon_receipts_waiting") == 0
    assert wait_for_receipt(url, execution, lambda index: index >= 9) < 18
    code, out = audit(tmp_path, url, "--state", "state.json")
    assert code != 0 and "has a different root from the old tree of the same size" in out, out
