"""What the usage view derives in Python from ClickHouse's sums: totals and their ratios, and the change from the
previous period (pure logic; tests/integration/test_query.py checks the sums themselves on chDB)."""

import dataclasses
from dataclasses import FrozenInstanceError
from decimal import Decimal

import pytest

import pipeline.usage.query as query
from pipeline.usage.query import COMPARED, Change, Changes, ModelUsage, Totals, _ratio

SUMS = {"requests": 8, "error_requests": 1, "unpriced_requests": 2, "input_tokens": 1000, "output_tokens": 333,
        "cache_read_tokens": 100, "cache_write_tokens": 50, "reasoning_tokens": 30,
        "input_cost": Decimal("0.002500000000000000000001"), "output_cost": Decimal("0.003"),
        "total_cost": Decimal("0.005500000000000000000001"), "units": {}, "unit_costs": {}}
COUNTS = ("requests", "error_requests", "unpriced_requests", "input_tokens", "output_tokens", "cache_read_tokens",
          "cache_write_tokens", "reasoning_tokens", "input_cost", "output_cost", "total_cost")


def test_totals_are_the_sums_with_total_tokens_and_ratios_derived():
    totals = Totals.from_sums(SUMS | {"model": "ignored"})
    assert {name: getattr(totals, name) for name in COUNTS} == {name: SUMS[name] for name in COUNTS}
    assert (totals.total_tokens, totals.avg_tokens_per_request, totals.output_input_ratio) == (
        1333, Decimal("166.62"), Decimal("0.3330"))
    assert str(totals.avg_tokens_per_request) == "166.62" and str(totals.output_input_ratio) == "0.3330"


def test_ratios_without_a_denominator_are_none():
    totals = Totals.from_sums(SUMS | {"requests": 0, "input_tokens": 0, "output_tokens": 0})
    assert (totals.total_tokens, totals.avg_tokens_per_request, totals.output_input_ratio) == (0, None, None)
    only_output = Totals.from_sums(SUMS | {"input_tokens": 0})
    assert (only_output.avg_tokens_per_request, only_output.output_input_ratio) == (Decimal("41.62"), None)


@pytest.mark.parametrize("numerator,denominator,places,expected", [
    (1, 3, "0.01", "0.33"), (2, 3, "0.01", "0.67"),
    (1, 8, "0.01", "0.12"), (3, 8, "0.01", "0.38"),  # half-even: 0.125 -> 0.12, 0.375 -> 0.38
    (0, 5, "0.0001", "0.0000"), (7, 7, "0.000001", "1.000000"), (5, 2, "0.01", "2.50"),
])
def test_a_ratio_is_rounded_half_even_to_its_places(numerator, denominator, places, expected):
    ratio = _ratio(numerator, denominator, Decimal(places))
    assert ratio is not None and str(ratio) == expected


def test_a_ratio_over_zero_is_none():
    assert _ratio(5, 0, Decimal("0.01")) is None


@pytest.mark.parametrize("current,previous,difference,relative", [
    (5, 4, 1, "0.2500"), (3, 4, -1, "-0.2500"), (4, 4, 0, "0.0000"), (1, 3, -2, "-0.6667"), (2, 3, -1, "-0.3333"),
    (7, 0, 7, None), (0, 0, 0, None),
    (Decimal("0.3"), Decimal("0.1"), Decimal("0.2"), "2.0000"),
    (Decimal("166.62"), Decimal("100.00"), Decimal("66.62"), "0.6662"),
    # 24-decimal money: the quotient keeps all its digits before the one rounding
    (Decimal("1.000150000000000000000001"), Decimal("1"), Decimal("0.000150000000000000000001"), "0.0002"),
    (Decimal("1.00015"), Decimal("1"), Decimal("0.00015"), "0.0002"),  # half-even: ...1.5 -> 2
    (Decimal("1.00025"), Decimal("1"), Decimal("0.00025"), "0.0002"),  # half-even: ...2.5 -> 2
    (Decimal("1.000250000000000000000001"), Decimal("1"), Decimal("0.000250000000000000000001"), "0.0003"),
])
def test_a_change_is_the_exact_difference_and_the_relative_change_rounded_once(current, previous, difference,
                                                                               relative):
    change = Change.of(current, previous)
    assert change.difference == difference and type(change.difference) is type(difference)
    assert change.relative == (None if relative is None else Decimal(relative))
    assert relative is None or str(change.relative) == relative


@pytest.mark.parametrize("current,previous", [(None, 4), (4, None), (None, None)])
def test_a_change_with_a_side_missing_is_unknown(current, previous):
    assert Change.of(current, previous) == Change(None, None)


def test_changes_compare_every_card_measure_by_name():
    current = Totals.from_sums(SUMS)
    previous = Totals.from_sums(SUMS | {"requests": 4, "output_tokens": 667, "total_cost": Decimal("0.0055")})
    changes = Changes.between(current, previous)
    assert changes.requests == Change(4, Decimal("1.0000"))
    assert changes.output_tokens == Change(-334, Decimal("-0.5007"))
    assert changes.total_tokens == Change(-334, Decimal("-0.2004"))
    assert changes.total_cost == Change(Decimal("1E-24"), Decimal("0.0000"))
    assert changes.avg_tokens_per_request == Change(Decimal("166.62") - Decimal("416.75"), Decimal("-0.6002"))
    assert changes.output_input_ratio == Change(Decimal("-0.3340"), Decimal("-0.5007"))
    for name in ("input_tokens", "error_requests", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
        assert getattr(changes, name) == Change(0, Decimal("0.0000")), name
    assert set(COMPARED) == {"total_tokens", "input_tokens", "output_tokens", "requests", "error_requests",
                             "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "total_cost",
                             "avg_tokens_per_request", "output_input_ratio"}


def test_without_a_previous_period_every_change_is_unknown():
    changes = Changes.between(Totals.from_sums(SUMS), None)
    assert all(getattr(changes, name) == Change(None, None) for name in COMPARED)


def test_answers_are_frozen_values():
    totals = Totals.from_sums(SUMS)
    with pytest.raises(FrozenInstanceError):
        totals.requests = 9  # type: ignore[misc]
    usage = ModelUsage("gpt-4o", "openai", Decimal("0.5"), totals)
    with pytest.raises(FrozenInstanceError):
        usage.model = "other"  # type: ignore[misc]


def test_every_answer_of_the_usage_view_is_a_frozen_dataclass():
    """Answers are handed to the API, the CLI and the CSV export as they are: none may be changed on the way."""
    answers = [value for value in vars(query).values()
               if isinstance(value, type) and value.__module__ == query.__name__ and dataclasses.is_dataclass(value)]
    assert {"Totals", "Status", "Freshness", "Summary", "ModelUsage", "ModelBreakdown", "SeriesBucket", "Series",
            "HourOfDay", "PeakHours", "KeyList", "Change", "Changes", "Comparison", "KeyActivity", "BusiestKeys",
            "SpikeAlert", "KeyAlerts"} <= {answer.__name__ for answer in answers}
    assert [answer.__name__ for answer in answers if not answer.__dataclass_params__.frozen] == []
