"""Webhook deliveries (SPEC section 12): each change POSTed as JSON `{"type": "answer.changed",
"data": <the change>}` to `[watch] webhook_url`, signed as the Standard Webhooks specification
says (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`, by the
`standardwebhooks` package), at least once.

A delivery row is written with its change, in the same transaction. Every watcher claims due
deliveries with a lease (as executions are claimed), so two processes never send the same one
at once, and sends each from its own greenlet, so a receiver that hangs holds up neither a job
nor the next change. A failed attempt (no 2xx within `webhook_timeout_s`) is tried again after
`webhook_backoff_s`, 4 times longer each time (at most an hour), until `webhook_max_attempts`;
then the delivery is marked failed. Every attempt's outcome is kept on the row. The URL is never
stored, logged or shown beyond its scheme, host and path (`portal.redact.safe_url`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timedelta

import gevent
import requests
from sqlalchemy import or_, select, update
from standardwebhooks import Webhook

from portal import redact
from portal.db import db
from portal.times import iso, utcnow
from portal.watch.config import WatchSettings, secret_key_bytes
from portal.watch.models import Change, Delivery, DeliveryStatus

log = logging.getLogger(__name__)

EVENT_TYPE = "answer.changed"
BACKOFF_FACTOR = 4
BACKOFF_CAP_S = 3600.0
# A claimed delivery is taken again this long after its attempt's timeout.
LEASE_MARGIN_S = 30.0


def backoff_s(watch: WatchSettings, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    return min(watch.webhook_backoff_s * BACKOFF_FACTOR ** max(0, attempts - 1), BACKOFF_CAP_S)


def body(change: Change) -> bytes:
    """The bytes POSTed (and signed) for one change."""
    doc = {"type": EVENT_TYPE, "data": change.to_dict()}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_headers(secret: str, message_id: str, payload: bytes, now: datetime) -> dict:
    """The Standard Webhooks headers for one attempt (a fresh timestamp on every attempt)."""
    signature = Webhook(secret).sign(message_id, now, payload)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def claim(owner: str, watch: WatchSettings, limit: int, now: datetime | None = None) -> list[int]:
    """Leases up to `limit` due deliveries to `owner`; returns their ids. The caller commits."""
    now = now or utcnow()
    if limit <= 0 or not watch.webhook_url:
        return []
    lease = {
        "lease_owner": owner,
        "lease_expires_at": now + timedelta(seconds=watch.webhook_timeout_s + LEASE_MARGIN_S),
    }
    due = select(Delivery.id).where(
        Delivery.status == DeliveryStatus.PENDING,
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at < now),
    )
    due = due.order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        ids = list(db.session.scalars(due.with_for_update(skip_locked=True)))
        if ids:
            db.session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(**lease))
        return ids
    # SQLite: one statement picks and leases under the write lock.
    statement = (
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(**lease)
        .returning(Delivery.id)
    )
    return sorted(db.session.scalars(statement).all())


def deliver(delivery_id: int, owner: str, watch: WatchSettings, version: str = "") -> str:
    """Makes one attempt at a claimed delivery and records it; returns the delivery's status."""
    delivery = db.session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.lease_owner != owner:
        db.session.rollback()
        return "not claimed"
    change = db.session.get(Change, delivery.change_id)
    payload, message_id = body(change), delivery.message_id
    db.session.commit()  # no transaction stays open while the receiver takes its time
    status_code, error, started = None, None, time.monotonic()
    secret = os.environ.get(watch.webhook_secret_env or "", "")
    if not secret_key_bytes(secret):
        error = f"the variable {watch.webhook_secret_env} holds no whsec_ secret"
    else:
        status_code, error = _post(watch, message_id, payload, secret, version)
    ms = round((time.monotonic() - started) * 1000)
    return _record(delivery_id, owner, watch, status_code, error, ms)


def _post(watch: WatchSettings, message_id: str, payload: bytes, secret: str, version: str):
    headers = signed_headers(secret, message_id, payload, utcnow())
    headers["User-Agent"] = f"beacon-portal/{version}".rstrip("/")
    timeout = watch.webhook_timeout_s
    try:
        # Both bounds: requests' per-read timeout, and gevent's on the whole exchange, so a
        # receiver that drips bytes cannot hold the attempt past the timeout either.
        with gevent.Timeout(timeout + 1.0, TimeoutError):
            response = requests.post(
                watch.webhook_url,
                data=payload,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            )
    except (TimeoutError, requests.Timeout):
        return None, f"no answer within {timeout:g} s"
    except requests.RequestException as exc:
        return None, redact.scrub(f"{type(exc).__name__}: {exc}", watch.webhook_url)
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"the receiver answered {response.status_code}"


def _record(delivery_id, owner, watch, status_code, error, ms) -> str:
    now = utcnow()
    delivery = db.session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.lease_owner != owner:
        db.session.rollback()
        return "not claimed"
    delivery.attempts += 1
    attempt = {"at": iso(now), "status_code": status_code, "error": error, "ms": ms}
    delivery.history = [*(delivery.history or []), attempt]
    delivery.last_status_code, delivery.last_error = status_code, error
    delivery.lease_owner, delivery.lease_expires_at = None, None
    if error is None:
        delivery.status, delivery.delivered_at = DeliveryStatus.DELIVERED, now
    elif delivery.attempts >= watch.webhook_max_attempts:
        delivery.status = DeliveryStatus.FAILED
    else:
        delivery.next_attempt_at = now + timedelta(seconds=backoff_s(watch, delivery.attempts))
    status, attempts = delivery.status, delivery.attempts
    db.session.commit()
    where = watch.webhook_target
    if error is None:
        log.info("webhook: change delivery %d to %s on attempt %d", delivery_id, where, attempts)
    else:
        log.warning(
            "webhook: delivery %d to %s, attempt %d: %s (%s)",
            delivery_id,
            where,
            attempts,
            error,
            "given up" if status == DeliveryStatus.FAILED else "will retry",
        )
    return status


def deliveries_page(limit: int = 100) -> list[dict]:
    """Returns the newest deliveries with their change, for the admin's page."""
    rows = db.session.execute(
        select(Delivery, Change)
        .join(Change, Change.id == Delivery.change_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    ).all()
    return [{**d.to_dict(), "change": c.to_dict()} for d, c in rows]
