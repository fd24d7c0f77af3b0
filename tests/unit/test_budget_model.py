"""Budget definitions: exact decimal amounts only, whole-percent thresholds, known scopes, periods and zones."""

from decimal import Decimal

import pytest

from pipeline.budgets.model import DEFAULT_THRESHOLDS, BudgetError, make_budget, parse_amount, parse_thresholds
from pipeline.usage.ranges import QueryError


@pytest.mark.parametrize("text,amount", [("100", Decimal(100)), ("12.50", Decimal("12.5")), ("0.01", Decimal("0.01")),
                                         ("99999999999999." + "9" * 24, Decimal("99999999999999." + "9" * 24)),
                                         ("0.000000000000000000000001", Decimal("1e-24"))])
def test_amounts_are_plain_decimal_strings(text, amount):
    assert parse_amount(text) == amount


@pytest.mark.parametrize("value,why", [
    (100.5, "decimal string"), (100, "decimal string"), (None, "decimal string"), (True, "decimal string"),
    ("1e3", "plain decimal"), ("-5", "plain decimal"), ("+5", "plain decimal"), ("5.", "plain decimal"),
    (" 5", "plain decimal"), ("1,000", "plain decimal"), ("NaN", "plain decimal"), ("Infinity", "plain decimal"),
    ("1" * 15, "plain decimal"), ("0." + "0" * 24 + "1", "plain decimal"), ("0", "more than 0"),
    ("0.000", "more than 0"), ("", "plain decimal"), ("١٠", "plain decimal"),
    ("5\n", "plain decimal"),
])
def test_anything_else_is_refused_with_a_reason(value, why):
    with pytest.raises(BudgetError, match=why) as raised:
        parse_amount(value)
    assert isinstance(raised.value, QueryError) and raised.value.error == "bad amount"


def test_thresholds_are_distinct_whole_percents_sorted():
    assert parse_thresholds(None) == parse_thresholds("") == DEFAULT_THRESHOLDS == (50, 80, 100)
    assert parse_thresholds("100, 50,80") == (50, 80, 100)
    assert parse_thresholds([90, 120]) == (90, 120)
    for bad in ("0", "1001", "50.5", "fifty", "50,,80", "-10", [True], [50, 50], "80,80"):
        with pytest.raises(BudgetError, match="thresholds"):
            parse_thresholds(bad)


def test_a_budget_names_a_known_scope_period_and_zone():
    budget = make_budget("org", "org-1", "week", "250.00", "Asia/Kolkata", "80")
    assert (budget.amount_usd, budget.thresholds, budget.tz) == (Decimal(250), (80,), "Asia/Kolkata")
    cases = [(("team", "x", "month", "1"), "unknown scope"), (("key", "", "month", "1"), "bad key id"),
             (("key", "k" * 257, "month", "1"), "bad key id"), (("key", "k", "year", "1"), "unknown period"),
             (("key", "k", "month", "1", "Mars/Olympus"), "unknown time zone")]
    for args, error in cases:
        with pytest.raises(BudgetError) as raised:
            make_budget(*args)
        assert raised.value.error == error
