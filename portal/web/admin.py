"""Admin sign-in for the web pages: a server-side session that logging out really ends.

The session cookie holds only a random id; the database keeps its SHA-256 and an expiry. A
copied cookie therefore stops working at logout or after `SESSION_HOURS`, whichever comes
first, in every worker. The login form is throttled per client address like submissions are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app, g, session
from sqlalchemy import delete

from portal.db import db
from portal.errors import RateLimited
from portal.models import AdminSession
from portal.times import utcnow

SESSION_HOURS = 12
# Login attempts per client address (limits' notation); every POST counts.
LOGIN_RATE = "10 per minute"
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


def throttle_wait(client: str | None) -> str | None:
    """Counts one login attempt from `client`; returns the seconds to wait when over the limit."""
    # Every attempt counts, so guessing the token is slow (docs/security.md).
    limiter = current_app.extensions["beacon_login_limiter"]
    try:
        limiter.check(f"login:{client or 'unknown'}")
    except RateLimited as exc:
        return exc.headers["Retry-After"]
    return None
