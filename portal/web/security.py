"""Security headers on every response (SPEC section 10), set by flask-talisman.

A Content-Security-Policy with no inline script (every script is a file the portal serves;
htmx is told not to insert its own style element), `frame-ancestors 'none'` (and
`X-Frame-Options: DENY` for older browsers), `X-Content-Type-Options: nosniff`, a
`Referrer-Policy`, and HSTS in production. Inline style *attributes* are allowed
(`style-src-attr`): the heat maps colour cells with a CSS custom property; style elements and
scripts stay forbidden. HTTPS redirects are left to the platform's edge (Railway terminates
TLS), and the session cookie flags stay the app's own (portal/settings.py).
"""

from __future__ import annotations

from flask import Flask
from flask_talisman import Talisman

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "style-src-attr": "'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
REFERRER_POLICY = "strict-origin-when-cross-origin"
HSTS_MAX_AGE_S = 365 * 24 * 3600


def init_app(app: Flask, env: str) -> Talisman:
    """Installs the headers; HSTS only when BEACON_ENV=production."""
    production = env == "production"
    return Talisman(
        app,
        force_https=False,
        frame_options="DENY",
        content_security_policy=CSP,
        referrer_policy=REFERRER_POLICY,
        strict_transport_security=production,
        strict_transport_security_max_age=HSTS_MAX_AGE_S,
        strict_transport_security_include_subdomains=False,
        # Talisman would otherwise rewrite these; they are the app's settings.
        session_cookie_secure=app.config.get("SESSION_COOKIE_SECURE", False),
        session_cookie_http_only=app.config.get("SESSION_COOKIE_HTTPONLY", True),
        session_cookie_samesite=app.config.get("SESSION_COOKIE_SAMESITE"),
    )
