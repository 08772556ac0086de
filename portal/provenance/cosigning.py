"""Witness cosigning on the portal's side (SPEC section 9, "Witnesses"; C2SP tlog-witness).

After the log grows, each configured witness is asked to cosign the newest checkpoint, from the
size it last cosigned, with the consistency proof from there (witness_client.exchange). The
cosignature is verified with the witness's configured key and kept (`cosignatures`), and served
after the portal's own line in the checkpoint note (`served_checkpoint`).

Off the append path. Every process that runs a dispatcher runs one `Cosigner` greenlet: woken
right after this process appended (`log_grew`), and every POLL_S seconds for what other
processes appended, it looks at each witness's row (`witness_state`) and asks only when the log
moved past what that witness cosigned. Asking is serialized per witness across every worker and
instance by a lease in that row (a conditional UPDATE, as the engine claims executions): one
process asks at a time, the others skip that witness and find the new cosignature in the
database. No transaction is open during the request, so a slow witness holds no lock and no
append waits for it; a request is bounded by witness_client.TIMEOUT_S and the lease outlives a
request and its one retry, so a process that dies while asking leaves a lease that expires.
Even if two processes did ask at once (an expired lease), the protocol keeps it safe: one of
them gets a 409 and resynchronizes. A refusal (a 409 that cannot be resolved, 422, 403, 404,
5xx, no answer, no valid cosignature) is logged, counted in
`beacon_witness_failures_total{witness}` and retried after a growing pause (up to a minute).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import gevent
import gevent.event
import requests
from prometheus_client import Counter
from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from portal import settings
from portal.db import db
from portal.provenance import merkle, tlog, witness_client
from portal.provenance.witness_config import WitnessSettings
from portal.provenance.witness_models import Cosignature, WitnessState
from portal.times import utcnow

POLL_S = 2.0
# After this process appends, wait a moment so a burst of appends is one request.
SETTLE_S = 0.25
LEASE_S = 3 * witness_client.TIMEOUT_S
BACKOFF_S = (2, 5, 10, 20, 40, 60)
# How many of the newest cosigned sizes `?cosigned=1` looks through for one still in the tree.
CANDIDATES = 8
log = logging.getLogger(__name__)

WITNESS_FAILURES = Counter(
    "beacon_witness_failures",
    "Requests to a witness that did not end in a valid cosignature, by witness.",
    ["witness"],
)
WITNESS_COSIGNATURES = Counter(
    "beacon_witness_cosignatures",
    "Cosignatures received and kept, by witness.",
    ["witness"],
)
_grew = gevent.event.Event()


def log_grew() -> None:
    """Wakes this process's cosigner: the log just grew here."""
    _grew.set()


def cosign(witness: WitnessSettings, owner: str, session: requests.Session) -> str:
    """Asks one witness to cosign the newest checkpoint when the log moved past what it
    cosigned and no other process is asking it; returns what happened, in a few words."""
    s = settings.current()
    state = _state(witness.name)
    size, root = tlog.head()
    db.session.commit()
    if size == 0:
        return "the log is empty"
    if (state.cosigned_size, state.cosigned_root) == (size, root):
        return f"up to date at {size}"
    now = utcnow()
    if state.retry_at is not None and now < state.retry_at:
        return "waiting to retry"
    claimed = db.session.execute(
        update(WitnessState)
        .where(
            WitnessState.name == witness.name,
            or_(WitnessState.lease_expires_at.is_(None), WitnessState.lease_expires_at < now),
        )
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=LEASE_S))
    ).rowcount
    db.session.commit()
    if not claimed:
        return "another process is asking it"
    # Read again under the lease: the process that held it before may have moved it.
    state = db.session.get(WitnessState, witness.name, populate_existing=True)
    if (state.cosigned_size, state.cosigned_root) == (size, root):
        _release(witness.name)
        return f"up to date at {size}"
    old = state.cosigned_size if state.cosigned_size <= size else 0
    note = tlog.note(s.log_origin, size, root, s.signing_seed)
    try:
        line, stamp = witness_client.exchange(
            session, witness, note, size, old, lambda held: _proof(held, size)
        )
    except witness_client.Refused as refused:
        return _refused(witness, state.failures, refused)
    except BaseException:
        _release(witness.name)
        raise
    _keep(witness.name, size, root, stamp, line)
    return f"cosigned {size}"


def _proof(old: int, size: int) -> list[bytes]:
    """Returns the consistency proof from `old` to `size`, read in a transaction of its own."""
    if not 0 < old < size:
        return []
    try:
        return merkle.consistency_proof(old, size, tlog.read)
    except LookupError as exc:
        raise witness_client.Refused(0, f"the log cannot prove {old} to {size}: {exc}") from None
    finally:
        db.session.commit()


def _state(name: str) -> WitnessState:
    """Returns the witness's row, made the first time the portal asks it."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    db.session.execute(
        insert(WitnessState)
        .values(name=name, cosigned_size=0, failures=0, updated_at=utcnow())
        .on_conflict_do_nothing()
    )
    db.session.commit()
    return db.session.get(WitnessState, name, populate_existing=True)


def _keep(name: str, size: int, root: bytes, stamp: int, line: str) -> None:
    """Stores a verified cosignature and moves the witness's row to the tree it cosigned."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    values = {"witness": name, "tree_size": size, "root_hash": root, "timestamp": stamp}
    statement = insert(Cosignature).values(**values, line=line, created_at=utcnow())
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=["witness", "tree_size", "root_hash"],
            set_={"timestamp": stamp, "line": line},
        )
    )
    db.session.execute(
        update(WitnessState)
        .where(WitnessState.name == name)
        .values(
            cosigned_size=size,
            cosigned_root=root,
            witness_size=size,
            failures=0,
            retry_at=None,
            last_error=None,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=utcnow(),
        )
    )
    db.session.commit()
    WITNESS_COSIGNATURES.labels(name).inc()
    log.info("witness %s cosigned the checkpoint of size %d", name, size)


def _refused(witness: WitnessSettings, failures: int, refused: witness_client.Refused) -> str:
    """Counts and logs a refusal, and spaces out the next attempt."""
    WITNESS_FAILURES.labels(witness.name).inc()
    pause = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
    log.warning(
        "witness %s did not cosign: %s (next attempt in %d s)", witness.name, refused, pause
    )
    values = {
        "failures": WitnessState.failures + 1,
        "retry_at": utcnow() + timedelta(seconds=pause),
        "last_error": str(refused)[:2000],
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": utcnow(),
    }
    if refused.held is not None:
        values["witness_size"] = refused.held
    db.session.rollback()
    db.session.execute(
        update(WitnessState).where(WitnessState.name == witness.name).values(**values)
    )
    db.session.commit()
    return f"refused: {refused}"


def _release(name: str) -> None:
    db.session.rollback()
    db.session.execute(
        update(WitnessState)
        .where(WitnessState.name == name)
        .values(lease_owner=None, lease_expires_at=None)
    )
    db.session.commit()


class Cosigner:
    """One process's greenlet that asks the configured witnesses to cosign (module docstring)."""

    def __init__(self, app, owner: str):
        self.app = app
        self.owner = owner
        self.witnesses = app.extensions["beacon"].config.witnesses
        self.session = requests.Session()

    def run(self) -> None:
        """Asks the witnesses after each local append and every POLL_S seconds, until killed."""
        while True:
            if _grew.wait(timeout=POLL_S):
                gevent.sleep(SETTLE_S)
            _grew.clear()
            self.round()

    def round(self) -> dict[str, str]:
        """Asks every witness once, each in its own greenlet; returns what happened to each."""
        tasks = {w.name: gevent.spawn(self.one, w) for w in self.witnesses}
        gevent.joinall(list(tasks.values()), timeout=LEASE_S)
        return {name: task.value or "still asking" for name, task in tasks.items()}

    def one(self, witness: WitnessSettings) -> str:
        """Runs `cosign` for one witness in an app context of its own."""
        with self.app.app_context():
            try:
                return cosign(witness, self.owner, self.session)
            except SQLAlchemyError:
                db.session.rollback()
                log.exception("asking witness %s failed on a database error", witness.name)
                return "database error"
            finally:
                db.session.remove()


def start(app, owner: str) -> gevent.Greenlet | None:
    """Starts this process's cosigner when the configuration names witnesses."""
    if not app.extensions["beacon"].config.witnesses:
        return None
    return gevent.spawn(Cosigner(app, owner).run)


def newest_cosigned(current: int) -> tuple[int, bytes] | None:
    """Returns (size, root) of the newest tree within the log that a witness cosigned."""
    rows = db.session.execute(
        select(Cosignature.tree_size, Cosignature.root_hash)
        .where(Cosignature.tree_size <= current, Cosignature.tree_size > 0)
        .distinct()
        .order_by(Cosignature.tree_size.desc())
        .limit(CANDIDATES)
    ).all()
    for size, root in rows:
        try:
            if merkle.root(size, tlog.read) == bytes(root):
                return size, bytes(root)
        except LookupError:
            continue  # that part of the tree is gone: not a checkpoint the log can serve
    return None


def served_checkpoint(origin: str, seed: bytes, cosigned: bool = False) -> dict:
    """Returns the checkpoint as the API serves it: the current one, or with `cosigned` the
    newest cosigned one (the current one while none is), its note carrying every cosignature
    line held for that tree, and `witnessed`: {witness name: cosignature timestamp}."""
    size, root = tlog.head()
    if cosigned:
        size, root = newest_cosigned(size) or (size, root)
    doc = tlog.checkpoint(origin, seed, (size, root))
    rows = db.session.scalars(
        select(Cosignature)
        .where(Cosignature.tree_size == size, Cosignature.root_hash == root)
        .order_by(Cosignature.witness)
    ).all()
    doc["note"] += "".join(row.line for row in rows)
    doc["witnessed"] = {row.witness: row.timestamp for row in rows}
    return doc


def witness_rows() -> list[WitnessState]:
    """Returns every witness's row (for /metrics)."""
    return list(db.session.scalars(select(WitnessState).order_by(WitnessState.name)))
