"""The evidence file is streamed (issue 26): read a chunk of rows at a time and encoded in small
batches, with the same bytes the whole document built in memory gave, which an outside verifier
checks. The reference below is that in-memory build, as the endpoint wrote it before.

A 3 x 3 job with two runs (so answers share a question), a judged answer and a failed one, run
by the engine in this process against real loopback providers; the chunks are made tiny so the
stream crosses every boundary (answers, executions, receipts, encoder batches).
"""

from __future__ import annotations

import json

import pytest
from flask import current_app
from sqlalchemy import select

from portal import settings
from portal.db import db
from portal.judge.models import Judgement
from portal.models import Answer, Execution, Job, with_answers
from portal.provenance import cosigning, evidence, receipts, tlog
from portal.provenance.log_models import Receipt
from portal.status import RunStatus
from portal.web.api import streaming
from tests.support.apps import spec_3x3
from tests.support.inline import run_inline
from tests.support.workers import Engine, submit


@pytest.fixture
def finished(tmp_path, database_url, make_app, signer):
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers()
        # One region fails every call: failed answers carry errors, not outputs.
        providers["eu-west"].always("500", model="mistral:7b")
        config = engine.config({r: p.base_url_openai for r, p in providers.items()}, max_attempts=1)
        app = make_app(BEACON_CONFIG=str(config), BEACON_SEMANTIC="0")
        client = app.test_client()
        job_id = submit(client, signer, spec_3x3(runs=2))
        run_inline(app)
        with app.app_context():
            answer = db.session.scalar(
                select(Answer)
                .join(Execution)
                .where(Execution.job_id == job_id, Answer.status == "completed")
                .order_by(Answer.id)
            )
            judged = Judgement(
                answer_id=answer.id,
                job_id=job_id,
                status="completed",
                label="substantive",
                reply="SUBSTANTIVE",
                model_id="judge",
                region="us-east",
                prompt_version="v1",
            )
            db.session.add(judged)
            db.session.commit()
        yield app, client, job_id
    finally:
        engine.close()


def in_memory(app, job_id: str) -> bytes:
    """The evidence file as the endpoint built it whole before it was streamed."""
    with app.test_request_context():
        job = db.session.scalar(select(Job).where(Job.id == job_id).options(with_answers()))
        s = settings.current()
        checkpoint = cosigning.served_checkpoint(s.log_origin, s.signing_seed, cosigned=True)
        ids = [e.id for e in job.executions]
        newest = max(
            db.session.scalars(select(Receipt.log_index).where(Receipt.execution_id.in_(ids)))
        )
        if newest >= checkpoint["size"]:
            checkpoint = cosigning.served_checkpoint(s.log_origin, s.signing_seed)
        rows = db.session.scalars(
            select(Receipt)
            .where(Receipt.execution_id.in_(ids))
            .where(Receipt.log_index < checkpoint["size"])
            .order_by(Receipt.log_index)
        ).all()
        doc = {
            "format": "beacon-evidence-v1",
            "job": {
                "id": job.id,
                "spec_hash": job.spec_hash,
                "signature_scheme": job.signature_scheme,
                "spec": job.spec_raw,
            },
            "executions": [e.to_dict(with_answers=True) for e in job.executions],
            "checkpoint": checkpoint,
            "public_key": s.portal_public_key,
            "receipts": [
                {**receipts.served(r), "inclusion": tlog.inclusion(r.log_index, checkpoint["size"])}
                for r in rows
            ],
        }
        body = (current_app.json.dumps(doc) + "\n").encode()
        db.session.remove()
        return body


def streamed(client, job_id: str) -> tuple[bytes, int]:
    """The evidence file as the endpoint streams it, and in how many pieces."""
    response = client.get(f"/api/v1/jobs/{job_id}/evidence", buffered=False)
    assert response.status_code == 200
    assert response.is_streamed
    assert response.headers["Content-Disposition"].endswith(f'"{job_id}-evidence.json"')
    pieces = list(response.response)
    response.close()
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in pieces), len(pieces)


@pytest.mark.parametrize("chunk", [1, 2, 5, 500])
def test_the_stream_is_the_in_memory_file_byte_for_byte(finished, monkeypatch, chunk):
    app, client, job_id = finished
    monkeypatch.setattr(evidence, "CHUNK", chunk)
    monkeypatch.setattr(evidence, "RECEIPTS_CHUNK", chunk)
    monkeypatch.setattr(streaming, "BATCH", max(1, chunk - 1))
    body, pieces = streamed(client, job_id)
    assert body == in_memory(app, job_id)
    assert pieces > 1 if chunk < 500 else pieces >= 1
    doc = json.loads(body)
    answers = [a for e in doc["executions"] for a in e["answers"]]
    assert len(answers) == 54 and len(doc["receipts"]) == 9
    assert {a["status"] for a in answers} == {RunStatus.COMPLETED, RunStatus.FAILED}
    assert sum(a["judgement"] is not None for a in answers) == 1


def test_an_encoder_that_keeps_key_order_is_matched_too(finished):
    app, client, job_id = finished
    app.json.sort_keys = False
    expected = in_memory(app, job_id)
    assert streamed(client, job_id)[0] == expected


def test_the_stream_holds_no_connection_between_chunks(finished, monkeypatch):
    app, client, job_id = finished
    monkeypatch.setattr(evidence, "CHUNK", 2)
    with app.app_context():
        pool = db.engine.pool
    response = client.get(f"/api/v1/jobs/{job_id}/evidence", buffered=False)
    iterator = iter(response.response)
    next(iterator)
    next(iterator)
    # Between two chunks the session has given its connection back to the pool.
    assert pool.checkedout() == 0
    response.close()
