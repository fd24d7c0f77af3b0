"""pipeline.metering.pricing at its edges: exact text of money units, a cost's total, the bounded caches and
the names of time-of-day prices (pure logic, no Kafka)."""

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from genai_prices.types import TimeOfDateConstraint

import pipeline.metering.pricing as pricing
from pipeline.metering.pricing import Cost, PriceBook, usd_text

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


def test_a_time_of_day_price_is_named_by_its_utc_times():
    beijing = timezone(timedelta(hours=8))
    assert pricing._describe(TimeOfDateConstraint(time(8, 30, tzinfo=beijing), time(0, 30, tzinfo=beijing))) \
        == " 00:30-16:30Z"
    assert pricing._describe(TimeOfDateConstraint(time(1, 0), time(4, 0))) == " 01:00-04:00Z"  # no offset: UTC
