"""Submission of a signed JobSpec: verify, trust, replay checks, normalize, store (SPEC 4-5).

`submit_jobspec` is the one path by which a job enters the portal, for the API, the web form and
the command line alike. A refusal raises a `DomainError` and leaves no row behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from portal import settings
from portal.config import BeaconConfig
from portal.db import db
from portal.engine import wake
from portal.errors import Conflict, DomainError, Forbidden, Invalid, Unauthenticated
from portal.intake import estimate, jobspec, signing, trust
from portal.models import Answer, Execution, Job, UsedNonce
from portal.status import RunStatus
from portal.times import utcnow


@dataclass(frozen=True)
class IntakeContext:
    """What intake needs besides the body: configuration, keys and the clock."""

    config: BeaconConfig
    trusted_keys: list[trust.TrustedKey]
    portal_public_key: str | None
    now: datetime | None = None


def intake_context() -> IntakeContext:
    """Builds the intake context from the running app's settings."""
    s = settings.current()
    return IntakeContext(s.config, s.trusted_keys, s.portal_public_key)


def submit_jobspec(raw: bytes | str, ctx: IntakeContext, source: str = "api") -> tuple[Job, bool]:
    """Stores a verified job and returns (job, created); created is False for a resubmission."""
    limit = ctx.config.intake.max_body_bytes
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > limit:
        # Every path (API, form, command line) verifies at most this many bytes.
        raise Invalid("too_large", f"the JobSpec is over the limit of {limit} bytes")
    try:
        body = signing.load_json(raw)
    except ValueError as exc:
        raise Invalid("invalid_json", f"the body is not valid JSON: {exc}") from None
    spec = jobspec.unwrap(body)
    jobspec.check_types(spec)
    now = ctx.now or utcnow()
    # The key is looked up before any signature work: an unknown key costs a string compare,
    # not four canonicalizations of a megabyte (docs/security.md).
    try:
        signing.check_form(spec)
    except signing.SignatureError as exc:
        refusal = Invalid if exc.kind == "invalid" else Unauthenticated
        raise refusal(exc.code, exc.message) from None
    key = _trust(spec["public_key"], ctx, now)
    verified = _verify(spec, ctx.config.intake.legacy_signatures)
    # Fields a legacy scheme leaves unsigned are dropped when a beacon-jcs-v1 signer may
    # have signed the same bytes: nobody can add an id to someone else's spec.
    spec = verified.covered or spec

    existing = db.session.scalar(select(Job).where(Job.spec_hash == verified.spec_hash))
    if existing is not None:
        return existing, False
    normalized = jobspec.normalize(spec, ctx.config)
    job_id = normalized.job_id or f"job-{verified.spec_hash[:16]}"
    if db.session.scalar(select(Job.pk).where(Job.id == job_id)) is not None:
        raise Conflict("id_conflict", f"a different spec already has id {job_id!r}", {"id": job_id})
    jobspec.check_timestamp(normalized.timestamp, now, ctx.config.intake.timestamp_window_s)
    if normalized.nonce is not None and _nonce_used(verified.public_key, normalized.nonce):
        raise _nonce_error(normalized.nonce)
    # Priced before anything is stored: a job over its budget leaves no row (SPEC 13).
    cost = estimate.estimate(normalized)
    budget = estimate.budget(normalized, ctx.config)
    estimate.check(cost, budget, normalized)

    raw_text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        job = _store_job(job_id, raw_text, verified, key.kid, normalized, ctx.config, now, source)
        job.estimated_cost_usd, job.max_cost_usd = cost.cost_usd, budget
        # Nothing spent yet: a known zero when every answer is priced, else unknown until one is.
        job.cost_usd = 0.0 if cost.cost_usd is not None else None
        db.session.commit()
    except IntegrityError:
        # A concurrent submission won the race: report what it stored, or the conflict.
        db.session.rollback()
        return _after_race(verified, job_id, normalized.nonce)
    wake.new_work()
    return job, True


def _verify(spec: dict, allow_legacy: bool) -> signing.Verified:
    try:
        return signing.verify(spec, allow_legacy=allow_legacy)
    except signing.SignatureError as exc:
        refusal = Invalid if exc.kind == "invalid" else Unauthenticated
        raise refusal(exc.code, exc.message) from None


def _trust(public_key: str, ctx: IntakeContext, now: datetime) -> trust.TrustedKey:
    try:
        return trust.check_trust(public_key, ctx.trusted_keys, ctx.portal_public_key, now)
    except trust.TrustError as exc:
        raise Forbidden(exc.code, exc.message) from None


def _nonce_used(public_key: str, nonce: str) -> bool:
    return db.session.get(UsedNonce, (public_key, nonce)) is not None


def _nonce_error(nonce: str) -> DomainError:
    return Conflict(
        "nonce_reused",
        f"metadata.nonce {nonce!r} was already used by this key",
        {"metadata.nonce": nonce},
    )


def _store_job(job_id, raw_text, verified, kid, spec, config, now, source) -> Job:
    """Stores the job, its executions and its answers, all queued, in the open transaction."""
    timeouts = [config.execution.job_timeout_s] + ([spec.timeout_s] if spec.timeout_s else [])
    job = Job(
        id=job_id,
        spec_hash=verified.spec_hash,
        spec_raw=raw_text,
        signature_scheme=verified.scheme,
        public_key=verified.public_key,
        signer_kid=kid,
        source=source,
        status=RunStatus.QUEUED,
        models=[m.id for m in spec.models],
        regions=[r.id for r in spec.regions],
        questions=spec.questions,
        runs=spec.runs,
        min_regions=spec.min_regions,
        min_success_rate=spec.min_success_rate,
        submitted_at=now,
        deadline_at=now + timedelta(seconds=min(timeouts)),
    )
    db.session.add(job)
    if spec.nonce is not None:
        db.session.add(UsedNonce(public_key=verified.public_key, nonce=spec.nonce, job_id=job_id))
    # The job's row first (its executions refer to it), then the rows in bulk (issue 26): a
    # 10,000-answer job as 10,000 ORM objects took seconds to build and flush.
    db.session.flush()
    execution_rows: dict[tuple[str, str], dict] = {}
    answer_rows: list[tuple[tuple[str, str], dict]] = []
    # The same walk the estimate priced (jobspec.NormalizedSpec.planned), in the order the
    # answers are stored (their ids give the order within a question).
    for model, region, question, asked, run in spec.planned():
        pair = (model.id, region.id)
        if pair not in execution_rows:
            execution_rows[pair] = _execution_row(job_id, len(execution_rows), model, region)
        answer_rows.append((pair, _answer_row(question, asked, run)))
    ids = _insert_executions(list(execution_rows.values()))
    execution_ids = dict(zip(execution_rows, ids, strict=True))
    for pair, row in answer_rows:
        row["execution_id"] = execution_ids[pair]
    if answer_rows:
        db.session.execute(insert(Answer.__table__), [row for _, row in answer_rows])
    return job


def _execution_row(job_id: str, position: int, model, region) -> dict:
    return {
        "job_id": job_id,
        "position": position,
        "model_id": model.id,
        "model_name": model.name,
        "model_icon": model.icon,
        "region": region.id,
        "region_name": region.name,
        "provider": region.provider,
        "provider_model": model.provider_model,
        "status": RunStatus.QUEUED,
    }


def _answer_row(question: dict, asked: dict, run: int) -> dict:
    return {
        "question_index": question["index"],
        "question_id": question["id"],
        "prompt": asked["prompt"],
        "language": asked["language"],
        "question_version": asked["version"],
        "run": run,
        "status": RunStatus.QUEUED,
        "attempts": 0,
    }


def _insert_executions(rows: list[dict]) -> list[int]:
    """Inserts the executions in one statement; returns their ids in the rows' order."""
    if not rows:
        return []
    statement = insert(Execution.__table__).returning(
        Execution.__table__.c.id, sort_by_parameter_order=True
    )
    return list(db.session.scalars(statement, rows))


def _after_race(verified, job_id: str, nonce: str | None) -> tuple[Job, bool]:
    existing = db.session.scalar(select(Job).where(Job.spec_hash == verified.spec_hash))
    if existing is not None:
        return existing, False
    if nonce is not None and _nonce_used(verified.public_key, nonce):
        raise _nonce_error(nonce)
    raise Conflict("id_conflict", f"a different spec already has id {job_id!r}", {"id": job_id})
