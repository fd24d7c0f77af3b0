"""pipeline.metering.pricing at its edges: exact text of money units, free prices in overrides, tier boundaries of
a sheet built here and the bounded caches (pure logic, no Kafka)."""

from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage
from genai_prices.types import ModelPrice, Tier, TieredPrices, TimeOfDateConstraint

import pipeline.metering.pricing as pricing
from pipeline.metering.pricing import Cost, PriceBook, PriceOverride, PricingError, Rate, TieredRates, load_overrides, usd_text

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
    override = PriceOverride("m", datetime(2026, 1, 1, tzinfo=UTC), Decimal(1), Decimal(2))
    with pytest.raises(FrozenInstanceError):
        override.model = "n"  # type: ignore[misc]
    assert not any(hasattr(value, "__dict__") for value in (rate, cost, override))
    assert repr(rate).startswith("Rate(version='v', input_token=Decimal('0.000001'),") and "_units" not in repr(rate)


def test_a_rate_prices_each_kind_of_token_and_each_request_with_its_own_coefficient():
    # USD per input token, cache read, cache write, input request, output token, reasoning token, output request
    rate = Rate("v", *(Decimal(n).scaleb(-24) for n in (2, 3, 5, 7, 11, 13, 17)))
    # 4 requests, 100 input tokens of which 20 cache reads and 10 cache writes, 50 output of which 30 reasoning
    assert rate.cost_units(4, 100, 20, 10, 50, 30) == (70 * 2 + 20 * 3 + 10 * 5 + 4 * 7, 20 * 11 + 30 * 13 + 4 * 17)
    assert rate.cost(4, 100, 20, 10, 50, 30) == (Decimal("278E-24"), Decimal("678E-24"))


@pytest.mark.parametrize("coefficient", [Decimal("1E-25"), Decimal("0.1234567890123456789012345"), Decimal("sNaN")])
def test_a_rate_refuses_a_coefficient_that_is_not_a_whole_number_of_units(coefficient):
    with pytest.raises(PricingError, match=" USD is not a whole number of 1e-24 USD$"):
        Rate("v", Decimal(0), Decimal(0), Decimal(0), Decimal(0), coefficient, Decimal(0), Decimal(0))


def test_amounts_of_up_to_50_digits_at_24_places_are_told_too_large_beyond_that_inexact():
    with pytest.raises(PricingError, match=r"^1E\+25 USD does not fit Decimal\(38, 24\)$"):
        pricing.quantize_usd(Decimal("1E+25"))  # 50 digits at 24 places: exact, but more than 38
    with pytest.raises(PricingError, match=r"^1E\+26 USD does not fit Decimal\(38, 24\) exactly$"):
        pricing.quantize_usd(Decimal("1E+26"))  # 51 digits: beyond the exact context's 50


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
    rate = PriceBook(overrides=[override]).rate_for("free", None, WHEN_MS, 1000)
    assert rate is not None and rate.cost_units(1, 1000, 10, 0, 1000, 0) == (0, 0)


def tiered_sheet(first_tier: int) -> ModelPrice:
    """1 USD per million input tokens up to ``first_tier``, 2 USD per million for the whole input above it
    (genai-prices' tier rule: a tier applies when the input tokens exceed its start), 3 USD output."""
    return ModelPrice(input_mtok=TieredPrices(base=Decimal(1), tiers=[Tier(start=first_tier, price=Decimal(2))]),
                      output_mtok=Decimal(3))


def test_each_band_of_a_sheet_with_several_tiers_has_its_own_price():
    """Tiers at 5, 6 and 100 input tokens: the band (5, 6] holds one count only, and each band is priced with
    its own tier, as genai-prices prices it."""
    sheet = ModelPrice(input_mtok=TieredPrices(base=Decimal(1), tiers=[
        Tier(start=5, price=Decimal(2)), Tier(start=6, price=Decimal(3)), Tier(start=100, price=Decimal(4))]),
        output_mtok=Decimal(5))
    priced = pricing._sheet_rates("v", sheet)
    assert isinstance(priced, TieredRates) and priced.starts == (5, 6, 100)
    for tokens, band, usd_per_mtok in ((1, "in<=5", 1), (5, "in<=5", 1), (6, "in>5", 2), (7, "in>6", 3),
                                       (100, "in>6", 3), (101, "in>100", 4)):
        rate = priced.rate_for(tokens)
        assert rate is not None and rate.version == f"v {band}" and rate.input_token == Decimal(usd_per_mtok) / 10**6
        expected = sheet.calc_price(Usage(input_tokens=tokens, output_tokens=2))
        assert rate.cost(1, tokens, 0, 0, 2, 0) == (expected["input_price"], expected["output_price"])


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



def test_lookups_within_one_utc_minute_share_one_cache_entry():
    book = PriceBook()
    minute_ms = WHEN_MS // 60_000 * 60_000
    rates = {book.rate_for("gpt-4o", "openai", minute_ms + offset, 10) for offset in (0, 1, 30_000, 59_999)}
    assert len(rates) == 1 and None not in rates
    assert list(book._by_minute) == [("gpt-4o", "openai", minute_ms // 60_000)]


SHEET = {"input_mtok": Decimal(1), "cache_read_mtok": Decimal("0.1"), "cache_write_mtok": Decimal("1.25"),
         "output_mtok": Decimal(3), "output_reasoning_mtok": Decimal(2), "requests_kcount": Decimal("0.5")}


@pytest.mark.parametrize("price", list(SHEET))
@pytest.mark.parametrize("factor", ["0.5", "2"])
def test_a_rate_that_disagrees_with_its_original_sheet_on_any_price_either_way_is_refused(price, factor):
    """The derived rate is checked against the original sheet with one usage in its band that has tokens of every
    kind: any difference, in any one price, above or below, means the sheet is not linear as assumed, and
    pricing with it would be inexact."""
    flat = ModelPrice(**SHEET)
    original = ModelPrice(**SHEET | {price: SHEET[price] * Decimal(factor)})
    assert pricing._derive_rate("v", flat, flat, 10).coefficients() == (
        Decimal("0.000001"), Decimal("1E-7"), Decimal("0.00000125"), Decimal("0.0005"), Decimal("0.000003"),
        Decimal("0.000002"), Decimal(0))
    with pytest.raises(pricing.PricingError, match="^v: genai-prices is not linear as assumed"):
        pricing._derive_rate("v", flat, original, 10)


def test_a_time_of_day_price_is_named_by_its_utc_times():
    beijing = timezone(timedelta(hours=8))
    assert pricing._describe(TimeOfDateConstraint(time(8, 30, tzinfo=beijing), time(0, 30, tzinfo=beijing))) \
        == " 00:30-16:30Z"
    assert pricing._describe(TimeOfDateConstraint(time(1, 0), time(4, 0))) == " 01:00-04:00Z"  # no offset: UTC


def test_a_request_fee_may_use_all_24_places_and_a_per_million_price_18(tmp_path: Path):
    path = tmp_path / "prices.toml"
    base = '[[price]]\nmodel = "m"\neffective_from = 2026-01-01\n'
    path.write_text(base + 'input_mtok = "0.000000000000000001"\noutput_mtok = "1"\n'
                    'request = "0.000000000000000000000001"\n')
    [override] = load_overrides(path)
    assert override.request == Decimal("1E-24") and override.input_mtok == Decimal("1E-18")
    path.write_text(base + 'input_mtok = "0.0000000000000000001"\noutput_mtok = "1"\n')
    with pytest.raises(pricing.PricingError, match="field 'input_mtok': '0.0000000000000000001' is not exact in USD "
                                                   "per token at 24 decimal places"):
        load_overrides(path)


def test_equal_price_periods_and_equal_models_keep_their_own_names():
    """The version names the period and the provider that were chosen, even where the snapshot holds another that
    compares equal (deepseek-flash's 01:00-04:00 and 06:00-10:00 prices; one Kimi model at doubleword and modal):
    the ledger's price_version says which sheet priced a row."""
    book, day = PriceBook(), datetime(2026, 11, 25, tzinfo=UTC)
    versions = [book.rate_for("deepseek-flash", "deepseek", int(day.replace(hour=hour).timestamp() * 1000), 10)
                for hour in (2, 7)]
    assert [rate and rate.version.split(" ", 3)[3] for rate in versions] == [
        "p1 01:00-04:00Z", "p2 06:00-10:00Z"]
    assert versions[0] is not None and versions[1] is not None
    assert versions[0].coefficients() == versions[1].coefficients()
    for provider in ("doubleword", "modal"):
        rate = book.rate_for("moonshotai/Kimi-K3.1-Pro", provider, WHEN_MS, 10)
        assert rate is not None and rate.version.split(" ")[2] == f"{provider}/moonshotai/Kimi-K3.1-Pro"
