"""The Beacon portal: compares how one language model answers across regions."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Builds the app: settings from the environment, extensions, blueprints, handlers."""
    from portal import logs, ratelimit, settings
    from portal.cli import commands
    from portal.db import db, migrate
    from portal.web import admin, body_deadline, errors, ops, params, security, url_text
    from portal.web.api import bp as api_bp
    from portal.web.pages import bp as pages_bp

    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    overrides = dict(test_config or {})
    if overrides.get("INSTANCE_PATH"):
        app.instance_path = overrides["INSTANCE_PATH"]
    app.extensions["beacon"] = settings.load_settings(app, overrides)
    app.config.update({k: v for k, v in overrides.items() if k.isupper()})
    app.config["BEACON_VERSION"] = __version__
    if app.extensions["beacon"].env == "production":
        # Railway (like most hosts) puts one proxy in front: trust its X-Forwarded-For and
        # -Proto, so client addresses (the rate limit's key) and https URLs are the real ones.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    # Outermost: a body's deadline starts when the server hands the request over.
    intake_limits = app.extensions["beacon"].config.intake
    app.wsgi_app = body_deadline.BodyDeadlines(
        app.wsgi_app, intake_limits.body_timeout_s, intake_limits.upload_slots
    )
    storage = app.extensions["beacon"].rate_limit_storage
    app.extensions["beacon_limiter"] = ratelimit.SubmissionLimiter(
        intake_limits.rate_limit, storage
    )
    app.extensions["beacon_admin_throttle"] = admin.throttle(app)
    logs.init_app(app, app.extensions["beacon"].env, app.extensions["beacon"].secrets)
    security.init_app(app, app.extensions["beacon"].env)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    url_text.register(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(pages_bp)
    app.register_blueprint(ops.bp)
    errors.register(app)
    params.register(app)
    commands.register(app)
    return app
