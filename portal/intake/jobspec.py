"""JobSpec parsing, validation and normalization (SPEC section 4).

Normalization runs after the signature has verified and never changes the stored spec: it reads
the signed object and returns a `NormalizedSpec` of configured models, regions and prompts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from portal.config import BeaconConfig, Model, Region
from portal.errors import Invalid
from portal.intake.job_questions import MAX_PROMPT_CHARS as MAX_PROMPT_CHARS
from portal.intake.job_questions import normalize_languages, normalize_questions

MAX_RUNS = 10
MAX_MIN_REGIONS = 1_000
JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")

# Top-level fields whose type is checked; anything else is kept as it is.
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "jobspec_id": (str,),
    "version": (str,),
    "benchmark": (dict,),
    "constraints": (dict,),
    "metadata": (dict, type(None)),
    "models": (list,),
    "questions": (list, type(None)),
    "languages": (list, type(None)),
    "runs": (int,),
    "created_at": (str,),
    "signature": (str,),
    "public_key": (str,),
}
CONSTRAINT_TYPES: dict[str, tuple[type, ...]] = {
    "regions": (list,),
    "min_regions": (int,),
    "min_success_rate": (int, float),
    "timeout": (int,),
    "provider_timeout": (int,),
    "max_cost_usd": (int, float),
}


@dataclass(frozen=True)
class NormalizedSpec:
    """What the portal runs: configured models and regions, prompts, limits."""

    job_id: str | None
    models: list[Model]
    regions: list[Region]
    questions: list[dict]
    runs: int
    min_regions: int | None
    min_success_rate: float | None
    timeout_s: float | None
    nonce: str | None
    timestamp: datetime | None
    max_cost_usd: float | None = None

    @property
    def answer_count(self) -> int:
        """Every answer the job stores: models x regions x (question, language) pairs x runs."""
        pairs = sum(len(question["languages"]) for question in self.questions)
        return len(self.models) * len(self.regions) * pairs * self.runs

    def planned(self) -> Iterator[tuple[Model, Region, dict, dict, int]]:
        """Yields every answer the job will have as (model, region, question, asked, run), where
        `asked` is the language, prompt and version it is asked in, in the order they are
        stored: submission builds its rows from this, and the estimate of its cost prices this,
        so both count the same answers."""
        for model in self.models:
            for region in self.regions:
                for question in self.questions:
                    for asked in question["languages"]:
                        for run in range(1, self.runs + 1):
                            yield model, region, question, asked, run


def invalid(code: str, message: str, fields: dict | None = None) -> Invalid:
    """Builds a refusal of the spec."""
    return Invalid(code, message, fields)


def unwrap(body: object) -> dict:
    """Returns the JobSpec inside the original portal's wrapper, or the body itself."""
    if not isinstance(body, dict):
        raise invalid("not_object", f"the body must be a JSON object, not {_kind(body)}")
    if "jobspec" in body and "signature" not in body:
        inner = body["jobspec"]
        if not isinstance(inner, dict):
            raise invalid(
                "invalid_field", "jobspec must be an object", {"jobspec": "not an object"}
            )
        return inner
    return body


def check_types(spec: dict) -> None:
    """Refuses a spec whose known fields have the wrong JSON types, naming each one."""
    problems = {}
    for name, types in FIELD_TYPES.items():
        if name in spec and not _is(spec[name], types):
            problems[name] = f"must be {_type_words(types)}, not {_kind(spec[name])}"
    constraints = spec.get("constraints")
    if isinstance(constraints, dict):
        for name, types in CONSTRAINT_TYPES.items():
            if name in constraints and not _is(constraints[name], types):
                problems[f"constraints.{name}"] = (
                    f"must be {_type_words(types)}, not {_kind(constraints[name])}"
                )
    if problems:
        first = next(iter(problems))
        raise invalid("invalid_field", f"{first} {problems[first]}", problems)


def job_id_of(spec: dict) -> str | None:
    """Returns the spec's `id` or `jobspec_id`, refusing ids unsafe in a URL."""
    job_id = spec.get("id") or spec.get("jobspec_id")
    if job_id is None:
        return None
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise invalid(
            "invalid_field",
            "id must be 1-200 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit",
            {"id": "unsafe characters or length"},
        )
    return job_id


def normalize(spec: dict, config: BeaconConfig) -> NormalizedSpec:
    """Resolves models, regions and questions of a verified spec against the configuration."""
    check_types(spec)
    constraints = spec.get("constraints") or {}
    metadata = spec.get("metadata") or {}
    normalized = NormalizedSpec(
        job_id=job_id_of(spec),
        models=normalize_models(metadata.get("models", spec.get("models")), config),
        regions=normalize_regions(constraints.get("regions"), config),
        questions=normalize_questions(spec, config, normalize_languages(spec, metadata)),
        runs=_runs(spec.get("runs", 1)),
        min_regions=_min_regions(constraints.get("min_regions")),
        min_success_rate=_rate(constraints.get("min_success_rate")),
        timeout_s=_timeout(constraints.get("timeout")),
        nonce=_nonce(metadata.get("nonce")),
        timestamp=parse_timestamp(metadata.get("timestamp")),
        max_cost_usd=_max_cost(constraints.get("max_cost_usd")),
    )
    limit = config.intake.max_answers
    if normalized.answer_count > limit:
        raise invalid(
            "too_many_answers",
            f"{normalized.answer_count} answers requested; the limit is {limit}",
            {"answers": normalized.answer_count, "max_answers": limit},
        )
    return normalized


def normalize_models(raw: object, config: BeaconConfig) -> list[Model]:
    """Turns strings and {"id", "name"?} objects into configured models, deduplicated in order."""
    if raw is None or raw == []:
        return config.default_models()
    if not isinstance(raw, list):
        raise invalid("invalid_field", "models must be a list", {"models": "not a list"})
    models: list[Model] = []
    for entry in raw:
        model_id = entry.get("id") if isinstance(entry, dict) else entry
        if not isinstance(model_id, str) or not model_id.strip():
            raise invalid(
                "invalid_field",
                "each model must be an id string or an object with a string id",
                {"models": f"bad entry {entry!r}"[:200]},
            )
        model = config.models.get(model_id.strip())
        if model is None:
            known = ", ".join(config.models)
            raise invalid(
                "unknown_model",
                f"unknown model {model_id!r}; known models: {known}",
                {"models": model_id},
            )
        if model not in models:
            models.append(model)
    return models


def normalize_regions(raw: object, config: BeaconConfig) -> list[Region]:
    """Resolves region ids and aliases; an unknown name is refused, never mapped elsewhere."""
    if raw is None or raw == []:
        return list(config.regions.values())
    regions: list[Region] = []
    for name in raw:
        region = config.find_region(name) if isinstance(name, str) else None
        if region is None:
            known = ", ".join(config.regions)
            raise invalid(
                "unknown_region",
                f"unknown region {name!r}; known regions: {known} (and their aliases)",
                {"constraints.regions": name if isinstance(name, str) else repr(name)},
            )
        if region not in regions:
            regions.append(region)
    return regions


def parse_timestamp(raw: object) -> datetime | None:
    """Parses `metadata.timestamp` (ISO-8601); a naive time is taken as UTC."""
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None:
        raise invalid(
            "invalid_field",
            f"metadata.timestamp must be an ISO-8601 time, not {raw!r}"[:200],
            {"metadata.timestamp": "not ISO-8601"},
        )
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def check_timestamp(when: datetime | None, now: datetime, window_s: float) -> None:
    """Refuses a timestamp farther than `window_s` from now (0 turns the check off)."""
    if when is None or not window_s:
        return
    skew = abs((now - when).total_seconds())
    if skew > window_s:
        raise invalid(
            "stale_timestamp",
            f"metadata.timestamp is {skew:.0f} s from the server clock; "
            f"at most {window_s:.0f} s allowed",
            {"metadata.timestamp": when.isoformat()},
        )


def _runs(value: int) -> int:
    if isinstance(value, bool) or not 1 <= value <= MAX_RUNS:
        raise invalid("invalid_field", f"runs must be 1 to {MAX_RUNS}", {"runs": repr(value)})
    return value


def _timeout(value: int | None) -> float | None:
    """Turns `constraints.timeout` (integer nanoseconds, 0 for none) into seconds."""
    if value is not None and value < 0:
        raise invalid(
            "invalid_field",
            "constraints.timeout must be 0 or more nanoseconds",
            {"constraints.timeout": repr(value)},
        )
    return (value or 0) / 1e9 or None


def _min_regions(value: int | None) -> int | None:
    # Bounded so a huge signed integer cannot overflow the database's integer column.
    if value is not None and (isinstance(value, bool) or not 0 <= value <= MAX_MIN_REGIONS):
        raise invalid(
            "invalid_field",
            f"constraints.min_regions must be 0 to {MAX_MIN_REGIONS}",
            {"constraints.min_regions": repr(value)},
        )
    return value


def _rate(value: float | None) -> float | None:
    if value is not None and (isinstance(value, bool) or not 0 <= value <= 1):
        raise invalid(
            "invalid_field",
            "constraints.min_success_rate must lie in [0, 1]",
            {"constraints.min_success_rate": repr(value)},
        )
    return None if value is None else float(value)


def _max_cost(value: float | None) -> float | None:
    """Checks `constraints.max_cost_usd`: the job's own budget in USD, lowering the portal's."""
    if value is not None and (isinstance(value, bool) or not math.isfinite(value) or value < 0):
        raise invalid(
            "invalid_field",
            "constraints.max_cost_usd must be a number of USD, 0 or more",
            {"constraints.max_cost_usd": repr(value)},
        )
    return None if value is None else float(value)


def _nonce(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or "\x00" in value:
        raise invalid(
            "invalid_field",
            "metadata.nonce must be a string of 1-200 characters, none of them NUL",
            {"metadata.nonce": "bad nonce"},
        )
    return value


def _is(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _kind(value: object) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _type_words(types: tuple[type, ...]) -> str:
    return " or ".join(dict.fromkeys(_kind_of_type(t) for t in types))


def _kind_of_type(t: type) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(t, t.__name__)
