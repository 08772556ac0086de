"""What a job may cost, worked out before it is stored, and its budget (SPEC section 13).

The estimate is an upper bound: each answer the job will have (`NormalizedSpec.planned`, the
same walk that builds its rows) is priced at its prompt's token bound plus the `max_tokens` its
region and model send (`portal.prices`, `portal.call_options`). When any (model, region) of the
job has no price the estimate is unknown (None), and a job with a budget is then refused: a
price the portal does not know cannot be held to one.

The budget is the smaller of `[intake] max_job_cost_usd` and the spec's own
`constraints.max_cost_usd`; a spec whose estimate is over it is refused `over_budget`, naming the
estimate and the limit, before any row is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal import call_options, prices
from portal.config import BeaconConfig
from portal.errors import Invalid
from portal.intake.jobspec import NormalizedSpec, normalize


@dataclass(frozen=True)
class Estimate:
    """How many answers a job has and the most they can cost (None: a price is unknown)."""

    answers: int
    cost_usd: float | None
    unpriced: tuple[tuple[str, str], ...] = ()  # (model id, region id) without a price


def estimate(spec: NormalizedSpec) -> Estimate:
    """Returns the upper bound of what the job's answers can cost."""
    pairs: dict[tuple[str, str], tuple] = {}
    bounds: dict[str, int] = {}
    total, answers = 0.0, 0
    for model, region, _question, asked, _run in spec.planned():
        answers += 1
        pair = pairs.get((model.id, region.id))
        if pair is None:
            pair = (prices.price_of(region, model), call_options.max_tokens_for(region, model))
            pairs[(model.id, region.id)] = pair
        price, max_tokens = pair
        if price is None:
            continue
        prompt = asked["prompt"]
        tokens = bounds.get(prompt)
        if tokens is None:
            tokens = bounds[prompt] = prices.prompt_token_bound(prompt)
        total += prices.answer_bound_usd(price, tokens, max_tokens)
    unpriced = tuple(key for key, (price, _) in pairs.items() if price is None)
    return Estimate(answers, None if unpriced else prices.round_up(total), unpriced)


def budget(spec: NormalizedSpec, config: BeaconConfig) -> float | None:
    """Returns the job's budget: the smaller of the portal's limit and the spec's own."""
    limits = [v for v in (config.intake.max_job_cost_usd, spec.max_cost_usd) if v is not None]
    return min(limits) if limits else None


def check(found: Estimate, limit: float | None, spec: NormalizedSpec) -> None:
    """Refuses a job whose estimate is over its budget, or unknown while it has one."""
    if limit is None:
        return
    where = _limit_source(limit, spec)
    fields = {"estimated_cost_usd": found.cost_usd, "max_cost_usd": limit}
    if found.cost_usd is None:
        model, region = found.unpriced[0]
        raise Invalid(
            "over_budget",
            f"the cost of model {model!r} in region {region!r} is unknown (it has no price), so"
            f" the job cannot be held to its budget of {prices.format_usd(limit)} ({where})",
            {**fields, "unpriced": [f"{m}@{r}" for m, r in found.unpriced]},
        )
    if found.cost_usd > limit:
        raise Invalid(
            "over_budget",
            f"the job's {found.answers} answers may cost up to"
            f" {prices.format_usd(found.cost_usd)}; the budget is {prices.format_usd(limit)}"
            f" ({where})",
            fields,
        )


def _limit_source(limit: float, spec: NormalizedSpec) -> str:
    if spec.max_cost_usd is not None and spec.max_cost_usd == limit:
        return "constraints.max_cost_usd"
    return "the portal's [intake] max_job_cost_usd"


def preview(spec: dict, config: BeaconConfig) -> tuple[Estimate, float | None]:
    """Returns the estimate and budget of an unsigned spec (the form, before submitting)."""
    normalized = normalize(spec, config)
    return estimate(normalized), budget(normalized, config)
