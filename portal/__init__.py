"""The Beacon portal: compares how one language model answers across regions."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Builds the app: settings from the environment, extensions, blueprints, handlers."""
    from . import (
        admin,
        api,
        api_answers,
        cli,
        findings_views,
        logs,
        ops,
        pages,
        params,
        provenance_api,
        provenance_pages,
        ratelimit,
        regions,
        security,
        settings,
        views_errors,
    )
    from .db import db, migrate

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
    intake_limits = app.extensions["beacon"].config.intake
    storage = app.extensions["beacon"].rate_limit_storage
    app.extensions["beacon_limiter"] = ratelimit.SubmissionLimiter(
        intake_limits.rate_limit, storage
    )
    app.extensions["beacon_login_limiter"] = ratelimit.SubmissionLimiter(admin.LOGIN_RATE, storage)
    logs.init_app(app, app.extensions["beacon"].env)
    security.init_app(app, app.extensions["beacon"].env)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health_bp)
    app.register_blueprint(provenance_api.bp)
    app.register_blueprint(provenance_pages.bp)
    app.register_blueprint(api_answers.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(findings_views.bp)
    app.register_blueprint(findings_views.api_bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(regions.bp)
    views_errors.register(app)
    params.register(app)
    cli.register(app)
    return app
