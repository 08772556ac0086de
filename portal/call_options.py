"""What a region and a model add to each provider request (SPEC section 13).

- `headers`: static request headers of a region; a value is literal text or `{env = "NAME"}`,
  read from the environment once at start-up (an unset variable refuses to start).
- `extra_body`: a table merged into every request body of a region (OpenRouter's
  `provider = {order = [...], allow_fallbacks = false}`); it may not replace what the portal
  itself asks (the model, the prompt, the sampling limits).
- `temperature` and `max_tokens` on a model or a region; the region wins, then the model, then
  the defaults (0 and 512). The estimate of a job's cost reads `max_tokens_for` too, so the
  number sent is the number the estimate counted.
"""

from __future__ import annotations

import math
import os
import re

from portal import prices

DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 512
MAX_TOKENS_LIMIT = 1_000_000
MAX_TEMPERATURE = 10.0
# RFC 9110 token characters.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the portal's own HTTP exchange sets: a region replacing them would break it.
TRANSPORT_HEADERS = {
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "accept-encoding",
}
# The header each provider kind carries api_key_env in.
KEY_HEADERS = {"openai": "authorization", "ollama": "authorization", "anthropic": "x-api-key"}
# The keys (and their types) these options add to a region's and a model's table.
REGION_KEYS = {
    "headers": dict,
    "extra_body": dict,
    "temperature": (int, float),
    "max_tokens": int,
    "prices": dict,
}
MODEL_KEYS = {
    "temperature": (int, float),
    "max_tokens": int,
    "price_in_per_mtok": (int, float),
    "price_out_per_mtok": (int, float),
}
# Body keys extra_body may not set, and what to do instead.
PROTECTED_BODY = {
    "model": "set provider_model on the model instead",
    "messages": "the prompt is the question's own",
    "stream": "the portal reads one whole JSON answer",
    "max_tokens": "set max_tokens on the region or the model instead",
    "max_completion_tokens": "set max_tokens on the region or the model instead",
    "temperature": "set temperature on the region or the model instead",
    "options.num_predict": "set max_tokens on the region or the model instead",
    "options.temperature": "set temperature on the region or the model instead",
}


class OptionError(ValueError):
    """A request option breaks a rule; `key` is its dotted key below the region or model."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def region_options(entry: dict, provider: str, model_ids: list[str]) -> dict:
    """Returns the Region fields of a region's request options and price overrides, checked."""
    headers, envs = parse_headers(entry.get("headers", {}), provider, entry.get("api_key_env"))
    try:
        overrides = prices.parse_overrides(entry.get("prices", {}), model_ids)
    except prices.PriceError as exc:
        raise OptionError(exc.key, exc.problem) from None
    return {
        "headers": headers,
        "header_envs": envs,
        "extra_body": check_extra_body(entry.get("extra_body", {})),
        "prices": overrides,
        **sampling(entry),
    }


def model_options(entry: dict) -> dict:
    """Returns the Model fields of a model's prices and sampling limits, checked."""
    try:
        prices.check_model_prices(entry)
    except prices.PriceError as exc:
        raise OptionError(exc.key, exc.problem) from None
    found = {key: float(entry[key]) for key in prices.PRICE_KEYS if key in entry}
    return {**found, **sampling(entry)}


def sampling(entry: dict) -> dict:
    """Returns the temperature and max_tokens an entry sets, checked."""
    found = {}
    if "temperature" in entry:
        found["temperature"] = check_temperature(entry["temperature"])
    if "max_tokens" in entry:
        found["max_tokens"] = check_max_tokens(entry["max_tokens"])
    return found


def check_temperature(value: object) -> float:
    """Returns a temperature as a float: a finite number from 0 to MAX_TEMPERATURE."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionError("temperature", f"must be a number (got {value!r})")
    if not math.isfinite(value) or not 0 <= value <= MAX_TEMPERATURE:
        raise OptionError("temperature", f"must be 0 to {MAX_TEMPERATURE:g} (got {value!r})")
    return float(value)


def check_max_tokens(value: object) -> int:
    """Returns max_tokens: a whole number from 1 to MAX_TOKENS_LIMIT."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError("max_tokens", f"must be a whole number (got {value!r})")
    if not 1 <= value <= MAX_TOKENS_LIMIT:
        raise OptionError("max_tokens", f"must be 1 to {MAX_TOKENS_LIMIT} (got {value})")
    return value


def parse_headers(
    table: object, provider: str, api_key_env: str | None
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Returns a region's headers as ((name, value), ...) with env values read, and the names
    of the environment variables they came from (secrets: portal.redact hides their values)."""
    if not isinstance(table, dict):
        raise OptionError("headers", 'must be a table: headers = {"X-Title" = "Beacon"}')
    headers, envs = [], []
    for name, spec in table.items():
        key = f"headers.{name}"
        if not HEADER_NAME.match(name):
            raise OptionError(key, "not a valid header name")
        folded = name.lower()
        if folded in TRANSPORT_HEADERS:
            raise OptionError(key, "set by the portal itself; a region cannot replace it")
        if api_key_env and folded == KEY_HEADERS.get(provider):
            raise OptionError(key, f"api_key_env ({api_key_env}) already sets it; keep one")
        value = _header_value(key, spec)
        if isinstance(spec, dict):
            envs.append(spec["env"])
        headers.append((name, value))
    return tuple(headers), tuple(envs)


def _header_value(key: str, spec: object) -> str:
    if isinstance(spec, dict):
        if set(spec) != {"env"} or not isinstance(spec["env"], str) or not spec["env"]:
            raise OptionError(key, 'must be text or {env = "NAME"}')
        value = os.environ.get(spec["env"])
        if not value:
            raise OptionError(key, f"the environment variable {spec['env']} is not set")
        where = f"the value of {spec['env']}"
    elif isinstance(spec, str):
        value, where = spec, "the value"
    else:
        raise OptionError(key, f'must be text or {{env = "NAME"}} (got {spec!r})')
    # A line break would end the header early and start another one of the value's choosing.
    if any(c in value for c in "\r\n\x00") or value != value.strip():
        raise OptionError(key, f"{where} has a line break, NUL or outer spaces")
    return value


def check_extra_body(table: object, path: str = "") -> dict:
    """Returns a region's extra_body, refusing keys the portal sets and values JSON cannot hold."""
    if not isinstance(table, dict):
        raise OptionError(f"extra_body.{path}" if path else "extra_body", "must be a table")
    for name, value in table.items():
        dotted = f"{path}.{name}" if path else name
        if dotted in PROTECTED_BODY:
            problem = f"would overwrite the request's own {name}: {PROTECTED_BODY[dotted]}"
            raise OptionError(f"extra_body.{dotted}", problem)
        if isinstance(value, dict):
            check_extra_body(value, dotted)
        else:
            _check_json(f"extra_body.{dotted}", value)
    return table


def _check_json(key: str, value: object) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _check_json(f"{key}.{name}", item)
    elif isinstance(value, list):
        for item in value:
            _check_json(key, item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise OptionError(key, "must be a finite number")
    elif not isinstance(value, str | int | float | bool):
        # TOML dates and times: json.dumps cannot send them.
        raise OptionError(key, f"JSON cannot hold {type(value).__name__} values")


def merged_body(payload: dict, extra: dict) -> dict:
    """Returns `payload` with `extra` merged in, table into table; `extra` wins elsewhere."""
    if not extra:
        return payload
    merged = dict(payload)
    for name, value in extra.items():
        mine = merged.get(name)
        if isinstance(mine, dict) and isinstance(value, dict):
            merged[name] = merged_body(mine, value)
        else:
            merged[name] = value
    return merged


def temperature_for(region, model) -> float:
    """Returns the temperature sent: the region's, else the model's, else 0."""
    for value in (region.temperature, model.temperature):
        if value is not None:
            return value
    return DEFAULT_TEMPERATURE


def max_tokens_for(region, model) -> int:
    """Returns max_tokens sent (and counted by the estimate): the region's, else the model's,
    else 512."""
    for value in (region.max_tokens, model.max_tokens):
        if value is not None:
            return value
    return DEFAULT_MAX_TOKENS
