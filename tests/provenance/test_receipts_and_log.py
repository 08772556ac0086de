"""Receipts, the log and its proofs, end to end: a real worker, real loopback providers.

Everything is checked with the test's own RFC 9162 and signed-note code (tests/support/rfc9162.py)
and the key the test configured, never with a key or a hash the portal serves.
"""

from __future__ import annotations

import base64
import hashlib
import json

import nacl.signing
import pytest
import rfc8785
from sqlalchemy import select, update

from portal.db import db
from portal.models import Answer, Execution
from portal.provenance import receipts, tlog
from portal.provenance.log_models import Receipt
from portal.times import utcnow
from tests.support.apps import THREE_REGIONS, spec_3x3
from tests.support.html_check import assert_valid_page
from tests.support.rfc9162 import Reference, open_note, verify_consistency, verify_inclusion
from tests.support.workers import Engine, get_job, submit, wait_for_job

pytestmark = pytest.mark.live

SEED = bytes(range(32))
SEED_B64 = base64.b64encode(SEED).decode()
PUBLIC_KEY = bytes(nacl.signing.SigningKey(SEED).verify_key)
ORIGIN = "beacon.test/log"


def entries(client) -> list[dict]:
    """Reads the whole log through GET /api/v1/log/entries, page by page."""
    items, cursor = [], None
    while True:
        query = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/log/entries", query_string=query).json
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items


def checkpoint(client) -> tuple[dict, int, bytes]:
    doc = client.get("/api/v1/log/checkpoint").json
    origin, size, root = open_note(doc["note"], PUBLIC_KEY)
    assert (origin, size, base64.b64encode(root).decode()) == (
        doc["origin"],
        doc["size"],
        doc["root_hash"],
    )
    return doc, size, root


@pytest.fixture
def finished_3x3(tmp_path, database_url, make_app, signer):
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers()
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        keys = {"BEACON_SIGNING_KEY": SEED_B64, "BEACON_LOG_ORIGIN": ORIGIN}
        app = make_app(BEACON_CONFIG=str(config), **keys)
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3())
        engine.worker(config, **keys)
        job = wait_for_job(client, job_id, engine=engine)
        assert job["status"] == "completed"
        yield app, client, job, providers
    finally:
        engine.close()


def test_3x3_job_receipts_outputs_inclusion_and_tree(finished_3x3):
    app, client, job, providers = finished_3x3
    doc, size, root = checkpoint(client)
    assert size == 9 and doc["public_key"] == base64.b64encode(PUBLIC_KEY).decode()
    served = {a["id"]: a for e in job["executions"] for a in e["answers"]}
    indexes = set()
    for execution in job["executions"]:
        response = client.get(f"/api/v1/executions/{execution['id']}/receipt")
        assert response.status_code == 200, response.json
        body = response.json
        receipt = body["receipt"]
        signed = rfc8785.dumps(receipt)
        nacl.signing.VerifyKey(PUBLIC_KEY).verify(signed, base64.b64decode(body["signature"]))
        assert receipt["format"] == "beacon-receipt-v1" and receipt["log_origin"] == ORIGIN
        assert (receipt["job_id"], receipt["spec_hash"]) == (job["id"], job["spec_hash"])
        assert receipt["signer_public_key"] == job["public_key"]
        assert receipt["execution_id"] == execution["id"]
        assert (receipt["model_id"], receipt["region"]) == (
            execution["model_id"],
            execution["region"],
        )
        assert receipt["endpoint"] == f"127.0.0.1:{providers[execution['region']].port}"
        assert receipt["status"] == "completed" and len(receipt["answers"]) == 3
        for item in receipt["answers"]:
            answer = served[item["answer_id"]]
            assert item["status"] == "completed"
            digest = hashlib.sha256(answer["output"].encode()).hexdigest()
            assert item["output_sha256"] == digest
            assert item["prompt_sha256"] == hashlib.sha256(answer["prompt"].encode()).hexdigest()
            said = item["served_by"]
            assert said == answer["served_by"]
            assert said["model"] == execution["provider_model"]
            assert said["system_fingerprint"] == f"fp-{execution['region']}"
            assert said["provider"] == execution["region"]
            assert said["peer_ip"] == "127.0.0.1"
            assert said["headers"]["x-request-id"].startswith(f"req-{execution['region']}-")
            assert said["headers"]["server"].startswith("loopback-llm/1")
        proof = client.get(
            "/api/v1/log/proof/inclusion", query_string={"index": body["log_index"], "size": size}
        ).json
        leaf = hashlib.sha256(b"\x00" + signed).digest()
        assert base64.b64decode(proof["leaf_hash"]) == leaf
        path = [base64.b64decode(h) for h in proof["hashes"]]
        assert verify_inclusion(body["log_index"], size, leaf, path, root)
        indexes.add(body["log_index"])
    assert indexes == set(range(9))
    listed = entries(client)
    assert [e["index"] for e in listed] == list(range(9))
    reference = Reference([rfc8785.dumps(e["receipt"]) for e in listed])
    assert reference.mth(0, len(listed)) == root


def test_receipts_are_issued_once_per_end_and_again_after_a_retry(finished_3x3):
    app, client, job, _ = finished_3x3
    execution_id = job["executions"][0]["id"]
    with app.app_context():
        s = app.extensions["beacon"]
        first = receipts.latest_receipt(execution_id)
        again = receipts.issue(execution_id, s.config, s.log_origin, s.signing_seed)
        assert again.id == first.id and tlog.head()[0] == 9
        assert receipts.issue_missing(s.config, s.log_origin, s.signing_seed) == 0
        # A retried execution ends again: it gets the next receipt, the old one stays.
        db.session.execute(
            update(Execution)
            .where(Execution.id == execution_id)
            .values(status="failed", finished_at=utcnow())
        )
        db.session.commit()
        second = receipts.issue(execution_id, s.config, s.log_origin, s.signing_seed)
        assert (second.seq, second.log_index) == (2, 9)
        assert json.loads(second.body)["status"] == "failed"
        assert receipts.citation([execution_id])[execution_id]["log_index"] == 9
        assert db.session.scalar(select(Receipt).where(Receipt.id == first.id)) is not None
    listed = entries(client)
    _, size, root = checkpoint(client)
    assert size == 10 and len(listed) == 10
    old_root = Reference([rfc8785.dumps(e["receipt"]) for e in listed]).mth(0, 9)
    proof = client.get("/api/v1/log/proof/consistency", query_string={"old": 9}).json
    assert proof["new"] == 10
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    assert verify_consistency(9, 10, old_root, root, hashes)


def test_pages_show_receipt_served_by_verify_command_and_checkpoint(finished_3x3):
    app, client, job, _ = finished_3x3
    execution = job["executions"][4]
    receipt = client.get(f"/api/v1/executions/{execution['id']}/receipt").json
    page = client.get(f"/executions/{execution['id']}").get_data(as_text=True)
    assert_valid_page(page)
    assert 'id="receipt"' in page
    assert f"<code>{receipt['log_index']}</code>" in page
    assert f"fp-{execution['region']}" in page and "x-request-id" in page
    command = (
        f"python3 scripts/verify_receipt.py --portal http://localhost --execution "
        f"{execution['id']} --public-key {base64.b64encode(PUBLIC_KEY).decode()}"
    )
    assert command in page
    job_page = client.get(f"/jobs/{job['id']}").get_data(as_text=True)
    assert_valid_page(job_page)
    assert f'href="/api/v1/jobs/{job["id"]}/evidence"' in job_page
    doc, size, _ = checkpoint(client)
    footer = job_page[job_page.index('<footer class="site">') :]
    assert f"of {size} entries" in footer and doc["root_hash"] in footer


def test_evidence_file_holds_spec_receipts_proofs_and_checkpoint(finished_3x3):
    app, client, job, _ = finished_3x3
    response = client.get(f"/api/v1/jobs/{job['id']}/evidence")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    evidence = response.json
    origin, size, root = open_note(evidence["checkpoint"]["note"], PUBLIC_KEY)
    assert (origin, size) == (ORIGIN, 9) and len(evidence["receipts"]) == 9
    spec = json.loads(evidence["job"]["spec"])
    signed = rfc8785.dumps({k: v for k, v in spec.items() if k not in ("signature", "public_key")})
    assert hashlib.sha256(signed).hexdigest() == job["spec_hash"] == evidence["job"]["spec_hash"]
    assert {e["id"] for e in evidence["executions"]} == {e["id"] for e in job["executions"]}
    for entry in evidence["receipts"]:
        leaf = hashlib.sha256(b"\x00" + rfc8785.dumps(entry["receipt"])).digest()
        path = [base64.b64decode(h) for h in entry["inclusion"]["hashes"]]
        assert verify_inclusion(entry["log_index"], size, leaf, path, root)


def test_refusals_of_the_provenance_api(make_app, signer):
    client = make_app(BEACON_CONFIG=str(THREE_REGIONS)).test_client()
    job_id = submit(client, signer, spec_3x3(questions=["identity_basic"]))
    execution_id = get_job(client, job_id)["executions"][0]["id"]
    missing = client.get(f"/api/v1/executions/{execution_id}/receipt")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "receipt_not_found"
    unknown = client.get("/api/v1/executions/999999/receipt")
    assert unknown.json["error"]["code"] == "execution_not_found"
    for path, query in [
        ("/api/v1/log/proof/inclusion", {"index": 0}),
        ("/api/v1/log/proof/inclusion", {"index": "x"}),
        ("/api/v1/log/proof/inclusion", {}),
        ("/api/v1/log/proof/consistency", {"old": 1}),
        ("/api/v1/log/proof/consistency", {"old": 0, "new": 5}),
        ("/api/v1/log/entries", {"limit": 0}),
    ]:
        response = client.get(path, query_string=query)
        assert response.status_code == 400, (path, query)
        assert response.json["error"]["code"] == "invalid_parameter"
    assert client.get("/api/v1/log/proof/consistency?old=0").json["hashes"] == []
    assert client.get("/api/v1/log/entries").json == {"items": [], "next": None}
    assert client.get("/api/v1/jobs/nope/evidence").status_code == 404
    empty = client.get("/api/v1/log/checkpoint").json
    assert empty["size"] == 0
    assert base64.b64decode(empty["root_hash"]) == hashlib.sha256(b"").digest()


def test_checkpoint_note_bytes_are_the_c2sp_form(make_app):
    app = make_app(BEACON_SIGNING_KEY=SEED_B64, BEACON_LOG_ORIGIN=ORIGIN)
    doc = app.test_client().get("/api/v1/log/checkpoint").json
    body = f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    key_hash = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + PUBLIC_KEY).digest()[:4]
    signature = nacl.signing.SigningKey(SEED).sign(body.encode()).signature
    line = "\u2014 " + ORIGIN + " " + base64.b64encode(key_hash + signature).decode()
    assert doc["note"] == body + "\n" + line + "\n"
    assert doc["note"].encode("utf-8").count(b"\xe2\x80\x94 ") == 1


@pytest.mark.parametrize("origin", ["has space", "plus+sign", "tab\there"])
def test_a_log_origin_a_note_cannot_name_is_refused(make_app, origin):
    from portal.config import ConfigError

    with pytest.raises(ConfigError, match="BEACON_LOG_ORIGIN"):
        make_app(BEACON_LOG_ORIGIN=origin)


def test_cancel_issues_receipts_and_backfill_marks_old_ends_late(make_app, signer):
    app = make_app(
        BEACON_CONFIG=str(THREE_REGIONS), BEACON_ADMIN_TOKEN="admin", BEACON_SIGNING_KEY=SEED_B64
    )
    client = app.test_client()
    job_id = submit(client, signer, spec_3x3(questions=["identity_basic"]))
    cancelled = client.post(
        f"/api/v1/jobs/{job_id}/cancel", headers={"Authorization": "Bearer admin"}
    )
    assert cancelled.status_code == 200
    job = get_job(client, job_id)
    for execution in job["executions"]:
        receipt = client.get(f"/api/v1/executions/{execution['id']}/receipt").json["receipt"]
        assert receipt["status"] == "cancelled"
        assert all(a["output_sha256"] is None for a in receipt["answers"])
    other = submit(client, signer, spec_3x3(questions=["math_basic"]))
    with app.app_context():
        # Executions that ended before receipts existed: ended in the database, no receipt.
        ids = [e["id"] for e in get_job(client, other)["executions"]]
        db.session.execute(
            update(Answer)
            .where(Answer.execution_id.in_(ids))
            .values(status="completed", output="an old answer", finished_at=utcnow())
        )
        db.session.execute(
            update(Execution)
            .where(Execution.id.in_(ids))
            .values(status="completed", finished_at=utcnow())
        )
        db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["beacon", "backfill-receipts"])
    assert result.exit_code == 0, result.output
    assert "issued 9 receipt(s) late; the log now has 18 entries" in result.output
    again = runner.invoke(args=["beacon", "backfill-receipts"])
    assert "issued 0 receipt(s) late" in again.output
    late = client.get(f"/api/v1/executions/{ids[0]}/receipt").json["receipt"]
    digest = hashlib.sha256(b"an old answer").hexdigest()
    assert late["answers"][0]["output_sha256"] == digest
    assert late["issued_at"] > late["finished_at"]
    page = client.get(f"/executions/{ids[0]}").get_data(as_text=True)
    assert "issued late" in page
