"""The `[schedules.<name>]` and `[watch]` tables (SPEC section 12): parsed and checked at start-up.

Pure data and checks, no Flask or database: `portal.config` calls `parse_schedules` once the
bank is known and `parse_watch` with the environment, and turns a `WatchConfigError` into the
one line that stops the start (`<file>: schedules.daily.every: ...`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from portal.questions import language_tag
from portal.redact import safe_url

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
EVERY = re.compile(r"^\s*([0-9]{1,9})\s*([smhd])\s*$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_EVERY_S = 5
MAX_RUNS = 10
SECRET_PREFIX = "whsec_"


class WatchConfigError(ValueError):
    """A schedule or the `[watch]` table is invalid; `key` is the dotted key, `problem` why."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class Schedule:
    """A JobSpec the portal submits itself every `every_s` seconds, signed with its own key."""

    name: str
    every: str
    every_s: int
    questions: tuple[str, ...]
    models: tuple[str, ...]
    regions: tuple[str, ...]
    languages: tuple[str, ...] = ()
    runs: int = 1


@dataclass(frozen=True)
class WatchSettings:
    """How changes are told apart from noise, and where they are POSTed."""

    similarity_threshold: float = 0.6
    webhook_url: str | None = None
    webhook_secret_env: str | None = None
    webhook_timeout_s: float = 10.0
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 5.0

    @property
    def webhook_target(self) -> str:
        """The webhook URL as pages and logs may show it: no credentials, no query string."""
        return safe_url(self.webhook_url)


def parse_every(key: str, raw: object) -> int:
    """Returns `every` in seconds: a whole number and a unit, s, m, h or d; at least 5 s."""
    match = EVERY.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise WatchConfigError(key, f'must read like "30s", "15m", "6h" or "1d" (got {raw!r})')
    seconds = int(match[1]) * UNIT_S[match[2]]
    if seconds < MIN_EVERY_S:
        raise WatchConfigError(key, f"must be at least {MIN_EVERY_S} s (got {raw!r})")
    return seconds


def parse_schedules(
    table: object, regions: Mapping, models: Mapping, questions: Mapping, default_models: list[str]
) -> dict[str, Schedule]:
    """Validates every `[schedules.<name>]` against the configured regions, models and bank."""
    if not isinstance(table, dict):
        raise WatchConfigError("schedules", "must be a table of schedules")
    return {
        name: _schedule(name, entry, regions, models, questions, default_models)
        for name, entry in table.items()
    }


_SCHEDULE_KEYS = {
    "questions": list,
    "models": list,
    "regions": list,
    "languages": list,
    "runs": int,
    "every": str,
}


def _schedule(name, entry, regions, models, questions, default_models) -> Schedule:
    prefix = f"schedules.{name}"
    if not NAME.match(name):
        raise WatchConfigError(prefix, "name must be 1-60 lowercase letters, digits and dashes")
    if not isinstance(entry, dict):
        raise WatchConfigError(prefix, "must be a table")
    for key, value in entry.items():
        if key not in _SCHEDULE_KEYS:
            known = ", ".join(_SCHEDULE_KEYS)
            raise WatchConfigError(f"{prefix}.{key}", f"unknown key (known: {known})")
        want = _SCHEDULE_KEYS[key]
        if not isinstance(value, want) or isinstance(value, bool):
            kind = "a list" if want is list else "a whole number" if want is int else "a string"
            raise WatchConfigError(f"{prefix}.{key}", f"must be {kind} (got {value!r})")
        if want is list and not all(isinstance(v, str) and v.strip() for v in value):
            raise WatchConfigError(f"{prefix}.{key}", "must be a list of non-empty strings")
    if "every" not in entry:
        raise WatchConfigError(f"{prefix}.every", 'required: how often, e.g. "24h"')
    every_s = parse_every(f"{prefix}.every", entry["every"])
    asked = _known(f"{prefix}.questions", entry.get("questions"), questions, "question")
    if not asked:
        raise WatchConfigError(f"{prefix}.questions", "required: at least one question id")
    chosen = _known(f"{prefix}.models", entry.get("models"), models, "model") or default_models
    places = _regions(f"{prefix}.regions", entry.get("regions"), regions) or list(regions)
    languages = _languages(f"{prefix}.languages", entry.get("languages", []), asked, questions)
    runs = entry.get("runs", 1)
    if not 1 <= runs <= MAX_RUNS:
        raise WatchConfigError(f"{prefix}.runs", f"must be 1 to {MAX_RUNS} (got {runs})")
    return Schedule(
        name=name,
        every=entry["every"].strip(),
        every_s=every_s,
        questions=tuple(asked),
        models=tuple(chosen),
        regions=tuple(places),
        languages=tuple(languages),
        runs=runs,
    )


def _known(key: str, given: list | None, known: Mapping, what: str) -> list[str]:
    out = []
    for item in given or []:
        if item not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise WatchConfigError(key, f"unknown {what} {item!r} (configured: {listed})")
        if item not in out:
            out.append(item)
    return out


def _regions(key: str, given: list | None, regions: Mapping) -> list[str]:
    names = {}
    for region in regions.values():
        for name in (region.id, *region.aliases):
            names[name.casefold()] = region.id
    out = []
    for item in given or []:
        found = names.get(item.strip().casefold())
        if found is None:
            listed = ", ".join(sorted(regions)) or "none"
            raise WatchConfigError(key, f"unknown region {item!r} (configured: {listed})")
        if found not in out:
            out.append(found)
    return out


def _languages(key: str, given: list, asked: list[str], questions: Mapping) -> list[str]:
    spoken = {lang for qid in asked for lang in questions[qid].languages}
    out = []
    for item in given:
        tag = language_tag(item)
        if tag is None or tag not in spoken:
            have = ", ".join(sorted(spoken))
            raise WatchConfigError(
                key, f"no question of this schedule is in language {item!r} (they have: {have})"
            )
        if tag not in out:
            out.append(tag)
    return out


_WATCH_KEYS = {
    "similarity_threshold": (int, float),
    "webhook_url": str,
    "webhook_secret_env": str,
    "webhook_timeout_s": (int, float),
    "webhook_max_attempts": int,
    "webhook_backoff_s": (int, float),
}


def parse_watch(entry: object, environ: Mapping[str, str]) -> WatchSettings:
    """Validates the `[watch]` table; with a webhook URL, the secret's variable must hold a
    `whsec_` base64 secret now, so a portal never starts that would send unsigned changes."""
    if not isinstance(entry, dict):
        raise WatchConfigError("watch", "must be a table")
    for key, value in entry.items():
        if key not in _WATCH_KEYS:
            raise WatchConfigError(f"watch.{key}", f"unknown key (known: {', '.join(_WATCH_KEYS)})")
        if not isinstance(value, _WATCH_KEYS[key]) or isinstance(value, bool):
            raise WatchConfigError(f"watch.{key}", f"must be a {_words(key)} (got {value!r})")
    threshold = entry.get("similarity_threshold", 0.6)
    if not 0 <= threshold <= 1:
        raise WatchConfigError("watch.similarity_threshold", f"must be 0 to 1 (got {threshold})")
    for key, low in (
        ("webhook_timeout_s", 0.1),
        ("webhook_max_attempts", 1),
        ("webhook_backoff_s", 0.1),
    ):
        if key in entry and entry[key] < low:
            raise WatchConfigError(f"watch.{key}", f"must be at least {low} (got {entry[key]})")
    url = entry.get("webhook_url")
    if url is not None:
        _check_webhook(url, entry.get("webhook_secret_env"), environ)
    elif "webhook_secret_env" in entry:
        raise WatchConfigError("watch.webhook_url", "required with webhook_secret_env")
    return WatchSettings(
        similarity_threshold=float(threshold),
        webhook_url=url,
        webhook_secret_env=entry.get("webhook_secret_env"),
        webhook_timeout_s=float(entry.get("webhook_timeout_s", 10.0)),
        webhook_max_attempts=entry.get("webhook_max_attempts", 6),
        webhook_backoff_s=float(entry.get("webhook_backoff_s", 5.0)),
    )


def _check_webhook(url: str, secret_env: str | None, environ: Mapping[str, str]) -> None:
    if not re.match(r"^https?://[^/?#\s]+", url):
        # Only the scheme and host are echoed: the rest of a webhook URL may be a secret.
        raise WatchConfigError(
            "watch.webhook_url", f"must start with http:// or https:// (got {safe_url(url)!r})"
        )
    if not secret_env:
        raise WatchConfigError(
            "watch.webhook_secret_env",
            "required with webhook_url: the name of the variable holding the whsec_ secret",
        )
    secret = environ.get(secret_env)
    if not secret:
        raise WatchConfigError("watch.webhook_secret_env", f"the variable {secret_env} is not set")
    if not secret_key_bytes(secret):
        raise WatchConfigError(
            "watch.webhook_secret_env",
            f"{secret_env} must hold whsec_ and the base64 of the secret's bytes",
        )


def secret_key_bytes(secret: str) -> bytes | None:
    """Returns the key a `whsec_<base64>` secret stands for, or None when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return None
    return key or None


def _words(key: str) -> str:
    want = _WATCH_KEYS[key]
    if want is str:
        return "string"
    return "whole number" if want is int else "number"
