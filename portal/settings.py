"""Runtime settings read from the environment at start-up (SPEC section 3), never at import."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from flask import Flask, current_app

from portal import instance, ratelimit, redact
from portal.config import BeaconConfig, ConfigError, load_config
from portal.intake import signing, trust
from portal.provenance import tlog
from portal.question_files import load_questions

ENV_NAMES = (
    "DATABASE_URL",
    "SECRET_KEY",
    "BEACON_ENV",
    "BEACON_CONFIG",
    "BEACON_QUESTIONS",
    "BEACON_SIGNING_KEY",
    "BEACON_TRUSTED_KEYS",
    "BEACON_MAX_CONCURRENCY",
    "BEACON_ADMIN_TOKEN",
    "BEACON_SEMANTIC",
    "BEACON_LOG_ORIGIN",
    "BEACON_RATE_LIMIT_STORAGE",
    "BEACON_TRUSTED_HOSTS",
)


@dataclass(frozen=True)
class Settings:
    """Everything the portal read at start-up; one per app."""

    env: str
    config: BeaconConfig
    trusted_keys: list[trust.TrustedKey]
    signing_seed: bytes
    portal_public_key: str
    admin_token: str | None
    # Sentence embeddings when the `semantic` extra is installed, unless BEACON_SEMANTIC=0.
    semantic: bool = True
    # The transparency log's origin line (SPEC section 9).
    log_origin: str = ""
    # Where rate-limit counters live: a `limits` storage URI (portal/ratelimit.py).
    rate_limit_storage: str = "memory://"
    # Every secret the portal knows, hidden in what providers send back and in logs.
    secrets: redact.Secrets = field(default_factory=redact.Secrets)


def current() -> Settings:
    """Returns the settings of the app in context."""
    return current_app.extensions["beacon"]


def in_own_context(function):
    """Returns `function` wrapped to run in a fresh context of the app in context (and so with a
    database session of its own): for work handed to another thread, which has neither."""
    app = current_app._get_current_object()

    def run(*args, **kwargs):
        with app.app_context():
            return function(*args, **kwargs)

    return run


def load_settings(app: Flask, overrides: dict) -> Settings:
    """Reads the environment (with `overrides` first) into app config and a `Settings`."""

    def get(name: str) -> str | None:
        value = overrides.get(name, os.environ.get(name))
        return None if value is None or value == "" else str(value)

    env = get("BEACON_ENV") or "development"
    if env not in ("development", "production"):
        raise ConfigError(
            "environment", "BEACON_ENV", f"must be development or production, not {env!r}"
        )
    secret = get("SECRET_KEY")
    if secret is None:
        if env == "production":
            raise ConfigError(
                "environment",
                "SECRET_KEY",
                "required when BEACON_ENV=production (sessions and CSRF tokens are signed "
                "with it): set it to a long random string, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`",
            )
        # Kept in the instance folder, so every worker and every restart sign sessions alike.
        secret = instance.secret_key(Path(app.instance_path))
    app.config["SECRET_KEY"] = secret
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(get("DATABASE_URL"), app.instance_path)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config["SQLALCHEMY_DATABASE_URI"])

    config = load_config(get("BEACON_CONFIG"), get("BEACON_MAX_CONCURRENCY"))
    if get("BEACON_QUESTIONS"):
        # Question files join the configuration's bank (SPEC section 11); a bad one stops here.
        loaded = load_questions(config.questions, get("BEACON_QUESTIONS"), config.source)
        config = replace(config, questions=loaded.bank)
    try:
        trusted = trust.parse_trusted_keys(get("BEACON_TRUSTED_KEYS"))
    except ValueError as exc:
        raise ConfigError("environment", "BEACON_TRUSTED_KEYS", str(exc)) from None
    seed = _signing_seed(get("BEACON_SIGNING_KEY"), Path(app.instance_path))
    app.config["MAX_CONTENT_LENGTH"] = config.intake.max_body_bytes
    hosts = [h.strip() for h in (get("BEACON_TRUSTED_HOSTS") or "").split(",") if h.strip()]
    # Requests naming another Host are refused (400), so no redirect or link can carry it.
    app.config["TRUSTED_HOSTS"] = hosts or None
    production = env == "production"
    app.config.update(
        SESSION_COOKIE_SECURE=production,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    semantic = get("BEACON_SEMANTIC")
    if semantic not in (None, "0", "1"):
        raise ConfigError("environment", "BEACON_SEMANTIC", f"must be 0 or 1, not {semantic!r}")
    try:
        origin = tlog.check_origin(get("BEACON_LOG_ORIGIN") or tlog.default_origin())
    except ValueError as exc:
        raise ConfigError("environment", "BEACON_LOG_ORIGIN", str(exc)) from None
    storage = get("BEACON_RATE_LIMIT_STORAGE") or ratelimit.DEFAULT_STORAGE
    try:
        ratelimit.build_storage(storage)
    except ValueError as exc:
        raise ConfigError("environment", "BEACON_RATE_LIMIT_STORAGE", str(exc)) from None
    admin_token = get("BEACON_ADMIN_TOKEN")
    return Settings(
        env,
        config,
        trusted,
        seed,
        signing.public_key_b64(seed),
        admin_token,
        semantic=semantic != "0",
        log_origin=origin,
        rate_limit_storage=storage,
        secrets=known_secrets(
            config,
            values=(admin_token, secret, seed),
            urls=(get("DATABASE_URL"), storage),
        ),
    )


def known_secrets(
    config: BeaconConfig,
    *,
    values: tuple[str | bytes | None, ...] = (),
    urls: tuple[str | None, ...] = (),
) -> redact.Secrets:
    """Every secret the portal knows at start-up: each region's key and the header values it
    takes from the environment (the variables `api_key_env` and `headers` name, read when text
    is scrubbed, as providers read them when they call), the secrets inside its `base_url`,
    `values` (the admin token, SECRET_KEY, the signing seed) and the passwords inside `urls`
    (the database's, the rate-limit storage's)."""
    secrets = redact.Secrets()
    for region in config.regions.values():
        secrets.add_url(region.base_url)
    for name in config.secret_env_names():
        secrets.add_env(name)
    for value in values:
        secrets.add(value)
    for url in urls:
        secrets.add(redact.password_of(url))
    return secrets


def database_url(raw: str | None, instance_path: str) -> str:
    """Returns the SQLAlchemy URL; Railway's postgres:// forms are mapped to psycopg 3."""
    if raw is None:
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(instance_path) / 'beacon.sqlite3'}"
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def engine_options(url: str) -> dict:
    """Returns engine options: SQLite waits for its write lock instead of failing at once."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def _signing_seed(raw: str | None, folder: Path) -> bytes:
    if raw is not None:
        try:
            return signing.decode_seed(raw)
        except ValueError as exc:
            raise ConfigError("environment", "BEACON_SIGNING_KEY", str(exc)) from None
    # Written once with owner-only permissions; every later start (and worker) reuses it.
    text = instance.read_or_create(
        folder / "portal_signing_key",
        lambda: base64.b64encode(signing.generate_seed()).decode(),
    )
    return signing.decode_seed(text)
