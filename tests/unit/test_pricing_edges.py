"""pipeline.metering.pricing at its edges: exact text of money units, free prices in overrides, tier boundaries of
a sheet built here and the bounded caches (pure logic, no Kafka)."""

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage
from genai_prices.types import ModelPrice, Tier, TieredPrices

import pipeline.metering.pricing as pricing
from pipeline.metering.pricing import Cost, PriceBook, Rate, TieredRates, load_overrides, usd_text

WHEN_MS = int(datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize("units,text", [
    (0, "0.000000000000000000000000"),
    (1, "0.000000000000000000000001"),
    (-1, "-0.000000000000000000000001"),
    (1_500_000_000_000_000_000_000_000, "1.500000000000000000000000"),
    (-123 * 10**24 - 45, "-123.000000000000000000000045"),
    (10**38 - 1, "99999999999999.999999999999999999999999"),
])
def test_units_of_1e_24_usd_read_as_exact_decimal_text(units, text):
    assert usd_text(units) == text
    assert int(text.replace(".", "")) == units


def test_a_costs_total_is_its_input_and_output_added():
    assert Cost(3, 5).total_units == 8
    assert Cost(10**30, 7).total_units == 10**30 + 7


def test_rates_and_costs_are_frozen_slotted_values():
    rate = Rate("v", *[Decimal("0.000001")] * 7)
    with pytest.raises(FrozenInstanceError):
        rate.version = "w"  # type: ignore[misc]
    cost = Cost(1, 2)
    with pytest.raises(FrozenInstanceError):
        cost.input_units = 3  # type: ignore[misc]
    assert not hasattr(rate, "__dict__") and not hasattr(cost, "__dict__")


def test_a_rate_prices_each_kind_of_token_and_each_request_with_its_own_coefficient():
    # USD per input token, cache read, cache write, input request, output token, reasoning token, output request
    rate = Rate("v", *(Decimal(n).scaleb(-24) for n in (2, 3, 5, 7, 11, 13, 17)))
    # 4 requests, 100 input tokens of which 20 cache reads and 10 cache writes, 50 output of which 30 reasoning
    assert rate.cost_units(4, 100, 20, 10, 50, 30) == (70 * 2 + 20 * 3 + 10 * 5 + 4 * 7, 20 * 11 + 30 * 13 + 4 * 17)
    assert rate.cost(4, 100, 20, 10, 50, 30) == (Decimal("278E-24"), Decimal("678E-24"))


@pytest.mark.parametrize("places", [16, 24])
def test_a_coefficient_is_storable_with_at_most_the_given_decimal_places(places):
    assert pricing._is_exact_at(Decimal(1).scaleb(-places), places)
    assert pricing._is_exact_at(Decimal("1.50").scaleb(-places + 1), places)  # trailing zeros do not count
    assert not pricing._is_exact_at(Decimal(1).scaleb(-places - 1), places)


def test_an_override_may_price_tokens_at_zero(tmp_path: Path):
    path = tmp_path / "prices.toml"
    path.write_text('[[price]]\nmodel = "free"\neffective_from = 2026-01-01\ninput_mtok = "0"\noutput_mtok = 0\n'
                    'cache_read_mtok = "0.000"\n')
    [override] = load_overrides(path)
    assert (override.input_mtok, override.output_mtok, override.cache_read_mtok) == (0, 0, 0)
    rate = PriceBook([override]).rate_for("free", None, WHEN_MS, 1000)
    assert rate is not None and rate.cost_units(1, 1000, 10, 0, 1000, 0) == (0, 0)


def tiered_sheet(first_tier: int) -> ModelPrice:
    """1 USD per million input tokens up to ``first_tier``, 2 USD per million for the whole input above it
    (genai-prices' tier rule: a tier applies when the input tokens exceed its start), 3 USD output."""
    return ModelPrice(input_mtok=TieredPrices(base=Decimal(1), tiers=[Tier(start=first_tier, price=Decimal(2))]),
                      output_mtok=Decimal(3))


@pytest.mark.parametrize("first_tier", [5, 10, 1000])
def test_a_tier_applies_above_its_start_as_in_genai_prices(first_tier):
    sheet = tiered_sheet(first_tier)
    priced = pricing._sheet_rates("v", sheet)
    assert isinstance(priced, TieredRates) and priced.starts == (first_tier,)
    at, above = priced.rate_for(first_tier), priced.rate_for(first_tier + 1)
    assert at is not None and above is not None
    assert (at.version, above.version) == (f"v in<={first_tier}", f"v in>{first_tier}")
    for rate, tokens in ((at, first_tier), (above, first_tier + 1)):
        expected = sheet.calc_price(Usage(input_tokens=tokens, output_tokens=7))
        assert rate.cost(1, tokens, 0, 0, 7, 0) == (expected["input_price"], expected["output_price"])
    assert at.input_token == Decimal("0.000001") and above.input_token == Decimal("0.000002")


def test_the_model_cache_is_bounded(monkeypatch):
    """A flood of distinct model names (a hostile or buggy producer) does not grow memory without end."""
    monkeypatch.setattr(pricing, "MAX_CACHED", 300)  # above CPython's cached small ints: compared by value
    book = PriceBook()
    for n in range(299):
        assert book.rate_for(f"no-such-model-{n}", None, WHEN_MS, 10) is None
    assert len(book._models) == len(book._by_minute) == 299  # below the bound every lookup is kept
    for n in range(299, 1000):
        assert book.rate_for(f"no-such-model-{n}", None, WHEN_MS, 10) is None
    assert len(book._models) <= 300 and len(book._by_minute) <= 300
    assert book.rate_for("gpt-4o", "openai", WHEN_MS, 10) is not None

