"""Admin sign-in for the web pages: a server-side session that logging out really ends.

The session cookie holds only a random id; the database keeps its SHA-256 and an expiry. A
copied cookie therefore stops working at logout or after `SESSION_HOURS`, whichever comes
first, in every worker.

The admin token is accepted in two places, the login form and `Authorization: Bearer` on the
API's admin endpoints, and both go through `check_token`: one throttle per client address
(`ADMIN_RATE`), counted before the comparison, right token or wrong, in the storage the
submission limit uses (`BEACON_RATE_LIMIT_STORAGE`), so every worker and instance shares it.
Every submitted login form is an attempt; an API request is one when it presents a token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app, g, session
from sqlalchemy import delete

from portal import ratelimit, settings
from portal.db import db
from portal.models import AdminSession
from portal.times import utcnow

SESSION_HOURS = 12
# Attempts to present the admin token per client address (limits' notation), on the login form
# and the API together; every attempt counts.
ADMIN_RATE = "10 per minute"
_KEY = "admin"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def token_matches(given: str, token: str) -> bool:
    """Compares a typed admin token with the configured one in constant time."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


def sign_in() -> None:
    """Starts an admin session: a fresh cookie session, a new id and a new CSRF token."""
    now = utcnow()
    db.session.execute(delete(AdminSession).where(AdminSession.expires_at < now))
    session_id = secrets.token_urlsafe(32)
    db.session.add(
        AdminSession(
            id_hash=_hash(session_id),
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    db.session.commit()
    # Nothing from before the login survives it, the CSRF token included (flask-wtf makes a
    # new one on the next form).
    session.clear()
    session[_KEY] = session_id
    session.permanent = False
    g.pop("beacon_admin", None)


def sign_out() -> None:
    """Ends this admin session on the server, so a copy of its cookie is refused too."""
    session_id = session.get(_KEY)
    if isinstance(session_id, str):
        db.session.execute(delete(AdminSession).where(AdminSession.id_hash == _hash(session_id)))
        db.session.commit()
    session.clear()
    g.pop("beacon_admin", None)


def signed_in() -> bool:
    """True when this request's cookie names a live admin session (looked up once)."""
    if "beacon_admin" not in g:
        session_id = session.get(_KEY)
        live = False
        if isinstance(session_id, str) and len(session_id) < 100:
            row = db.session.get(AdminSession, _hash(session_id))
            live = row is not None and row.expires_at > utcnow()
        g.beacon_admin = live
    return g.beacon_admin


def throttle(app) -> ratelimit.SubmissionLimiter:
    """Builds the admin-token throttle of `app`, in the rate-limit storage its settings name."""
    storage = app.extensions["beacon"].rate_limit_storage
    return ratelimit.SubmissionLimiter(
        ADMIN_RATE,
        storage,
        namespace="admin",
        noun="admin token attempts",
        refusal="admin token attempts",
    )


def count_attempt(client: str | None) -> None:
    """Counts one attempt to present the admin token; raises RateLimited over ADMIN_RATE."""
    # Every attempt counts, the right token too, so guessing it is slow (docs/security.md).
    current_app.extensions["beacon_admin_throttle"].check(client or "unknown")


def check_token(given: str | None, client: str | None) -> bool:
    """Counts the attempt from `client` (RateLimited when over the limit), then says whether
    `given` is the admin token; False when none is set."""
    count_attempt(client)
    token = settings.current().admin_token
    return token is not None and given is not None and token_matches(given, token)
