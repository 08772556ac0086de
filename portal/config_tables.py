"""The TOML file's tables (SPEC sections 3 and 13): execution limits, intake limits, regions and
models as frozen dataclasses, and the checker that builds them, naming the dotted key of every
problem. `portal.config` assembles them into a `BeaconConfig`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from portal import call_options
from portal.questions import Question, QuestionError, parse_question
from portal.redact import safe_url

PROVIDER_KINDS = ("openai", "ollama", "anthropic", "local")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")

# Job submissions (API and form together) per client address unless [intake] rate_limit says.
DEFAULT_RATE_LIMIT = "60 per minute"


class ConfigError(Exception):
    """A configuration file or variable is invalid; the message says where and why."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class ExecutionSettings:
    # Pool slots (provider calls in flight) per worker process. Remote providers answer in
    # seconds, so throughput is slots / latency: 32 slots cost little memory and no extra
    # database connections (docs/deploy.md, "Sizing the pool", scripts/bench_pool.py).
    max_concurrency: int = 32
    call_timeout_s: float = 300.0
    job_timeout_s: float = 3600.0
    max_attempts: int = 3
    lease_s: float = 30.0


@dataclass(frozen=True)
class IntakeSettings:
    # The original runner's signing forms leave fields unsigned: off unless an operator
    # migrating from it turns them on (docs/signing.md).
    legacy_signatures: bool = False
    timestamp_window_s: float = 600.0
    max_body_bytes: int = 1048576
    # Submissions per client address, e.g. "30 per minute"; "" sets no limit.
    rate_limit: str = DEFAULT_RATE_LIMIT
    # Answers one job may have, and the most its estimate may cost (None: no limit; SPEC 13).
    max_answers: int = 10_000
    max_job_cost_usd: float | None = None
    # A request body must arrive whole within this (portal/web/body_deadline.py); at most
    # `upload_slots` bodies per worker get that long, the others 1 s.
    body_timeout_s: float = 10.0
    upload_slots: int = 100


@dataclass(frozen=True)
class Region:
    id: str
    name: str
    provider: str
    aliases: tuple[str, ...] = ()
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int | None = None
    model_path: str | None = None
    # Provider calls started per period across every process, e.g. "60 per minute"; "" none.
    rate_limit: str = ""
    # Request options and price overrides (portal/call_options.py, portal/prices.py).
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    header_envs: tuple[str, ...] = ()  # the variables header values were read from
    extra_body: dict = field(default_factory=dict, hash=False)
    temperature: float | None = None
    max_tokens: int | None = None
    prices: dict = field(default_factory=dict, hash=False)

    @property
    def secret_env_names(self) -> tuple[str, ...]:
        """The env variables whose values this region sends: secrets for portal.redact."""
        return ((self.api_key_env,) if self.api_key_env else ()) + self.header_envs


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    icon: str = "🤖"
    provider_model: str = ""
    default: bool = False
    model_path: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    price_in_per_mtok: float | None = None  # USD per million tokens; None: not priced
    price_out_per_mtok: float | None = None


class TableChecker:
    """Validates one file's tables; every failure names the dotted key."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str):
        raise ConfigError(self.source, key, problem)

    def table(self, name: str, data: dict) -> dict:
        value = data.get(name, {})
        if not isinstance(value, dict):
            self.fail(name, "must be a table")
        for key in value:
            if name == "regions" and not ID_PATTERN.match(key):
                self.fail(f"{name}.{key}", "id must be lowercase letters, digits and dashes")
            if not isinstance(value[key], dict):
                self.fail(f"{name}.{key}", "must be a table")
        return value

    def keys(self, prefix: str, entry: dict, allowed: dict[str, type | tuple]):
        for key, value in entry.items():
            if key not in allowed:
                self.fail(f"{prefix}.{key}", f"unknown key (known: {', '.join(allowed)})")
            want = allowed[key]
            ok = isinstance(value, want) and not (
                isinstance(value, bool) and bool not in _tuple(want)
            )
            if not ok:
                self.fail(f"{prefix}.{key}", f"must be {_type_words(want)} (got {value!r})")

    def settings(self, name: str, entry, cls):
        if not isinstance(entry, dict):
            self.fail(name, "must be a table")
        types = {
            "max_concurrency": int,
            "call_timeout_s": (int, float),
            "job_timeout_s": (int, float),
            "max_attempts": int,
            "lease_s": (int, float),
            "legacy_signatures": bool,
            "timestamp_window_s": (int, float),
            "max_body_bytes": int,
            "rate_limit": str,
            "max_answers": int,
            "max_job_cost_usd": (int, float),
            "body_timeout_s": (int, float),
            "upload_slots": int,
        }
        allowed = {k: types[k] for k in cls.__dataclass_fields__}
        self.keys(name, entry, allowed)
        for key, value in entry.items():
            if key == "rate_limit":
                self.rate(f"{name}.{key}", value)
                continue
            minimum = 0 if key in ("timestamp_window_s", "max_job_cost_usd") else 1
            if isinstance(value, float) and not math.isfinite(value):
                self.fail(f"{name}.{key}", f"must be a finite number (got {value})")
            if not isinstance(value, bool) and value < minimum:
                self.fail(f"{name}.{key}", f"must be at least {minimum} (got {value})")
        return cls(**entry)

    def rate(self, key: str, value: str) -> None:
        from portal.ratelimit import parse_rate

        try:
            parse_rate(value)
        except ValueError:
            self.fail(key, f'must read like "30 per minute", or "" for no limit (got {value!r})')

    def region(self, key: str, entry: dict, model_ids: list[str]) -> Region:
        prefix = f"regions.{key}"
        self.keys(
            prefix,
            entry,
            {
                "name": str,
                "aliases": list,
                "provider": str,
                "base_url": str,
                "api_key_env": str,
                "max_concurrency": int,
                "model_path": str,
                "base_url_env": str,
                "rate_limit": str,
                **call_options.REGION_KEYS,
            },
        )
        if "rate_limit" in entry:
            self.rate(f"{prefix}.rate_limit", entry["rate_limit"])
        provider = entry.get("provider")
        if provider not in PROVIDER_KINDS:
            self.fail(
                f"{prefix}.provider",
                f"required, one of {', '.join(PROVIDER_KINDS)} (got {provider!r})",
            )
        if provider != "local" and not entry.get("base_url"):
            self.fail(f"{prefix}.base_url", f"required for provider {provider!r}")
        if entry.get("base_url") and not re.match(r"^https?://", entry["base_url"]):
            self.fail(
                f"{prefix}.base_url",
                f"must start with http:// or https:// (got {safe_url(entry['base_url'])!r})",
            )
        aliases = entry.get("aliases", [])
        if not all(isinstance(a, str) and a.strip() for a in aliases):
            self.fail(f"{prefix}.aliases", "must be a list of non-empty strings")
        if entry.get("max_concurrency", 1) < 1:
            self.fail(f"{prefix}.max_concurrency", "must be at least 1")
        if entry.get("model_path") and not Path(entry["model_path"]).is_file():
            self.fail(f"{prefix}.model_path", f"no such file: {entry['model_path']}")
        try:
            options = call_options.region_options(entry, provider, model_ids)
        except call_options.OptionError as exc:
            self.fail(f"{prefix}.{exc.key}", exc.problem)
        return Region(
            id=key,
            name=entry.get("name", key),
            provider=provider,
            aliases=tuple(aliases),
            base_url=_base_url(entry),
            api_key_env=entry.get("api_key_env"),
            max_concurrency=entry.get("max_concurrency"),
            model_path=entry.get("model_path"),
            rate_limit=entry.get("rate_limit", "").strip(),
            **options,
        )

    def model(self, key: str, entry: dict) -> Model:
        prefix = f"models.{key}"
        self.keys(
            prefix,
            entry,
            {
                "name": str,
                "icon": str,
                "provider_model": str,
                "default": bool,
                "model_path": str,
                **call_options.MODEL_KEYS,
            },
        )
        if not key.strip() or any(c.isspace() for c in key):
            self.fail(prefix, "model id must not be empty or contain spaces")
        if entry.get("model_path") and not Path(entry["model_path"]).is_file():
            self.fail(f"{prefix}.model_path", f"no such file: {entry['model_path']}")
        try:
            options = call_options.model_options(entry)
        except call_options.OptionError as exc:
            self.fail(f"{prefix}.{exc.key}", exc.problem)
        return Model(
            id=key,
            name=entry.get("name", key),
            icon=entry.get("icon", "🤖"),
            provider_model=entry.get("provider_model", key),
            default=entry.get("default", False),
            model_path=entry.get("model_path"),
            **options,
        )

    def question(self, key: str, entry: dict) -> Question:
        try:
            return parse_question(key, entry)
        except QuestionError as exc:
            self.fail(f"questions.{exc.key}", exc.problem)

    def unique_aliases(self, regions: dict[str, Region]):
        seen: dict[str, str] = {}
        for region in regions.values():
            for name in (region.id, *region.aliases):
                folded = name.casefold()
                if folded in seen and seen[folded] != region.id:
                    self.fail(
                        f"regions.{region.id}.aliases",
                        f"{name!r} already names region {seen[folded]!r}",
                    )
                seen[folded] = region.id


def _base_url(entry: dict) -> str | None:
    """Returns base_url, overridden by the env var named in `base_url_env` when it is set."""
    override = entry.get("base_url_env") and os.environ.get(entry["base_url_env"])
    return (override or entry.get("base_url") or "").rstrip("/") or None


def _tuple(want) -> tuple:
    return want if isinstance(want, tuple) else (want,)


def _type_words(want) -> str:
    names = {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
    }
    return " or ".join(names.get(t, t.__name__) for t in _tuple(want))
