"""Prices and costs (SPEC section 13): what one answer cost, and the most it can cost.

A model's `price_in_per_mtok` and `price_out_per_mtok` (USD per million tokens) hold in every
region; a region's `[regions.<id>.prices."<model id>"]` overrides either of them for that model
there. A `local` region (this machine) costs nothing unless it is priced. Anything else without
both prices has an unknown price: its answers' cost is null, never zero.

The most an answer can cost (`answer_bound_usd`) counts its prompt as its UTF-8 bytes plus
`TEMPLATE_TOKENS`, not SPEC's characters / 4: a tokenizer over bytes (every model the portal
talks to) never makes more tokens of a text than it has bytes, while the chat template and a
default system prompt add tokens the prompt does not show (SmolLM2 reports 31 prompt tokens for
"Hi"). docs/providers.md, "Cost estimates", says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRICE_KEYS = ("price_in_per_mtok", "price_out_per_mtok")
PER_TOKENS = 1_000_000
# Tokens a chat template and a default system prompt may add around a prompt: SmolLM2 adds 29,
# Llama 3.1 and Qwen 2.5 about 30 with their default system lines, OpenAI and Anthropic under 10.
TEMPLATE_TOKENS = 64
# Estimates are rounded up to this many decimal places of a dollar, so the sum of many float
# products can never come out a hair below the sum of the costs it bounds.
ESTIMATE_DECIMALS = 9


class PriceError(ValueError):
    """A price entry breaks a rule; `key` is its dotted key below the table it sits in."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


@dataclass(frozen=True)
class Price:
    """USD per million prompt (in) and completion (out) tokens."""

    in_per_mtok: float
    out_per_mtok: float


FREE = Price(0.0, 0.0)


def check_price(key: str, value: object) -> float:
    """Returns a price as a float, or raises PriceError: it must be a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceError(key, f"must be a number of USD per million tokens (got {value!r})")
    if not math.isfinite(value) or value < 0:
        raise PriceError(key, f"must be 0 or more (got {value!r})")
    return float(value)


def check_model_prices(entry: dict) -> None:
    """Refuses a model that sets one price without the other."""
    given = [key for key in PRICE_KEYS if key in entry]
    if len(given) == 1:
        missing = next(key for key in PRICE_KEYS if key not in given)
        raise PriceError(missing, f"required with {given[0]} (set both, 0 for free)")
    for key in given:
        check_price(key, entry[key])


def parse_overrides(table: object, model_ids: list[str]) -> dict[str, dict[str, float]]:
    """Returns a region's `prices` table as {model id: {price key: value}}, checked."""
    if not isinstance(table, dict):
        raise PriceError("prices", 'must be a table of models: [regions.<id>.prices."<model>"]')
    overrides = {}
    for model_id, entry in table.items():
        if model_id not in model_ids:
            known = ", ".join(model_ids) or "none configured"
            raise PriceError(f"prices.{model_id}", f"unknown model (known: {known})")
        if not isinstance(entry, dict):
            raise PriceError(f"prices.{model_id}", f"must be a table of {' and '.join(PRICE_KEYS)}")
        values = {}
        for key, value in entry.items():
            if key not in PRICE_KEYS:
                known = ", ".join(PRICE_KEYS)
                raise PriceError(f"prices.{model_id}.{key}", f"unknown key (known: {known})")
            values[key] = check_price(f"prices.{model_id}.{key}", value)
        overrides[model_id] = values
    return overrides


def price_of(region, model) -> Price | None:
    """Returns the price of `model` in `region`, or None when it is unknown."""
    override = region.prices.get(model.id, {})
    price_in = override.get("price_in_per_mtok", model.price_in_per_mtok)
    price_out = override.get("price_out_per_mtok", model.price_out_per_mtok)
    if price_in is None and price_out is None and region.provider == "local":
        return FREE
    if price_in is None or price_out is None:
        return None
    return Price(price_in, price_out)


def cost_usd(
    price: Price | None, prompt_tokens: int | None, completion_tokens: int | None
) -> float | None:
    """Returns what an answer cost from the tokens its provider reported; None when the
    provider reported no usage or the price is unknown (never a zero that was not earned)."""
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    return (prompt_tokens * price.in_per_mtok + completion_tokens * price.out_per_mtok) / PER_TOKENS


def prompt_token_bound(prompt: str) -> int:
    """Returns the most prompt tokens a provider can count for `prompt` (see the module doc)."""
    return len(prompt.encode("utf-8")) + TEMPLATE_TOKENS


def answer_bound_usd(price: Price, prompt_tokens: int, max_tokens: int) -> float:
    """Returns the most an answer can cost: `prompt_tokens` in (a bound) and `max_tokens` out."""
    return (prompt_tokens * price.in_per_mtok + max_tokens * price.out_per_mtok) / PER_TOKENS


def round_up(value: float) -> float:
    """Returns `value` rounded up to ESTIMATE_DECIMALS decimal places of a dollar."""
    scale = 10**ESTIMATE_DECIMALS
    return math.ceil(value * scale) / scale


def format_usd(value: float | None) -> str:
    """Returns a dollar amount for people: cents from $1, three significant digits below."""
    if value is None:
        return "unknown"
    if value >= 1:
        return f"${value:,.2f}"
    if value <= 0:
        return "$0"
    digits = max(2, 2 - math.floor(math.log10(value)))
    return f"${value:.{digits}f}"
