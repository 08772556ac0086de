"""The Beacon portal: compares how one language model answers across regions."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    """Builds the app: settings from the environment, extensions, blueprints, handlers."""
    from . import api, cli, pages, settings, views_errors
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

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    app.register_blueprint(api.bp)
    app.register_blueprint(api.health_bp)
    app.register_blueprint(pages.bp)
    views_errors.register(app)
    cli.register(app)
    return app
