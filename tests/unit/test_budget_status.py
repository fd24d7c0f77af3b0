"""Budget periods and the projection rule, as pure functions: DST days of 23 and 25 hours, a half-hour zone,
a skipped midnight, Monday weeks; the projection on a period's first day, for a key without history, for a
key first seen today, and its exceed date, against figures worked out here with exact fractions."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from pipeline.budgets.model import Budget
from pipeline.budgets.periods import local_midnight, period_bounds
from pipeline.budgets.status import OVER, PROJECTED_OVER, WITHIN, budget_status, project

BERLIN, KOLKATA, SANTIAGO = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata"), ZoneInfo("America/Santiago")


def hours(start: datetime, end: datetime) -> float:
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


@pytest.mark.parametrize("period,at,start,end,length", [
    ("day", datetime(2026, 10, 25, 12, tzinfo=UTC), "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25),
    ("day", datetime(2026, 3, 29, 12, tzinfo=UTC), "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 23),
    ("day", datetime(2026, 10, 24, 22, tzinfo=UTC), "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25),
    ("week", datetime(2026, 10, 25, 12, tzinfo=UTC), "2026-10-19T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 169),
    ("week", datetime(2026, 10, 26, 0, tzinfo=UTC), "2026-10-26T00:00:00+01:00", "2026-11-02T00:00:00+01:00", 168),
    ("month", datetime(2026, 10, 31, 22, 59, tzinfo=UTC), "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00",
     31 * 24 + 1),
    ("month", datetime(2026, 10, 31, 23, tzinfo=UTC), "2026-11-01T00:00:00+01:00", "2026-12-01T00:00:00+01:00",
     30 * 24),
    ("month", datetime(2026, 12, 31, 23, tzinfo=UTC), "2027-01-01T00:00:00+01:00", "2027-02-01T00:00:00+01:00",
     31 * 24),
])
def test_berlin_periods_follow_the_local_calendar_across_dst(period, at, start, end, length):
    first, after = period_bounds(period, BERLIN, at)
    assert (first.isoformat(), after.isoformat(), hours(first, after)) == (start, end, length)
    assert first <= at < after


def test_a_half_hour_zone_starts_its_days_at_half_past_utc():
    first, after = period_bounds("day", KOLKATA, datetime(2026, 11, 4, 18, 30, tzinfo=UTC))
    assert (first.astimezone(UTC).isoformat(), after.astimezone(UTC).isoformat()) == (
        "2026-11-04T18:30:00+00:00", "2026-11-05T18:30:00+00:00")
    first, _ = period_bounds("day", KOLKATA, datetime(2026, 11, 4, 18, 29, 59, tzinfo=UTC))
    assert first.isoformat() == "2026-11-04T00:00:00+05:30"


def test_a_day_whose_midnight_is_skipped_starts_at_its_first_real_instant():
    """Chile moves its clocks from 00:00 to 01:00 on 2026-09-06: that day starts at 01:00 -03 (04:00 UTC)."""
    start = local_midnight(datetime(2026, 9, 6).date(), SANTIAGO)
    assert start.astimezone(UTC) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    first, after = period_bounds("day", SANTIAGO, datetime(2026, 9, 6, 12, tzinfo=UTC))
    assert first.astimezone(UTC) == start.astimezone(UTC) and hours(first, after) == 23


def expected_projection(spent: str, trend: str, since: datetime, now: datetime, end: datetime, amount: str):
    """The documented rule with exact fractions: rate over max(1 h, now - since), projected = spent + rate x
    (end - now), exceeds where spent + rate x t reaches the amount (before the end), rounded down to seconds.
    Durations in UTC: Python subtracts two datetimes of the same zone as wall clocks, ignoring DST."""
    now, since, end = now.astimezone(UTC), since.astimezone(UTC), end.astimezone(UTC)
    window = max(Fraction(int((now - since).total_seconds())), Fraction(3600))
    rate = Fraction(Decimal(trend)) / window  # USD per second
    remaining = Fraction(int((end - now).total_seconds()))
    projected = Fraction(Decimal(spent)) + rate * remaining
    exceeds = None
    if Fraction(Decimal(spent)) < Fraction(Decimal(amount)) and rate > 0:
        needed = (Fraction(Decimal(amount)) - Fraction(Decimal(spent))) / rate
        if needed < remaining:
            exceeds = now + timedelta(seconds=int(needed))
    as_decimal = lambda f: (Decimal(f.numerator) / Decimal(f.denominator)).quantize(  # noqa: E731
        Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
    return as_decimal(rate * 86400), as_decimal(projected), exceeds


def test_projection_over_a_25_hour_day_uses_real_hours():
    """Berlin, 2026-10-25 (25 h). At 12:00 UTC, 14 real hours have passed (00:00+02:00 = 22:00 UTC) and 11
    remain; the trend window began 3 days earlier (first day with spend)."""
    _, end = period_bounds("day", BERLIN, datetime(2026, 10, 25, 12, tzinfo=UTC))
    now = datetime(2026, 10, 25, 12, tzinfo=UTC).astimezone(BERLIN)
    since = local_midnight(datetime(2026, 10, 22).date(), BERLIN)
    p = project(Decimal("7"), Decimal("10"), now, end, Decimal("30.5"), since)
    rate, projected, exceeds = expected_projection("7", "30.5", since, now, end, "10")
    assert (p.daily_rate_usd, p.projected_usd) == (rate, projected)
    assert p.exceeds_at == exceeds.replace(microsecond=0) and p.exceeds_at.tzinfo is BERLIN
    assert p.daily_rate_usd == Decimal("8.511628")  # 30.5 / 86 h x 24
    assert p.exceeds_at.isoformat() == "2026-10-25T21:27:32+01:00"  # $3 more at 30.5/86 $/h: 8 h 27 min 32 s


def test_first_day_of_a_period_projects_from_the_previous_days():
    """A monthly budget, 30 minutes into November: nothing spent yet this month, $70 in the last 7 days."""
    now = datetime(2026, 11, 1, 0, 30, tzinfo=BERLIN)
    start, end = period_bounds("month", BERLIN, now)
    since = local_midnight(datetime(2026, 10, 25).date(), BERLIN)
    status = budget_status(Budget("key", "k", "month", Decimal(290), "Europe/Berlin"), now, Decimal(0),
                           Decimal(70), since)
    rate, projected, exceeds = expected_projection("0", "70", since, now, end, "290")
    assert status.period_start == start and status.spent_usd == 0 and status.thresholds_crossed == ()
    assert (status.daily_rate_usd, status.projected_usd) == (rate, projected)
    assert status.daily_rate_usd == Decimal("9.911504")  # $70 over 7 days and 30 min, one of them 25 h long
    assert status.projected_usd == Decimal("297.138643") and status.state == PROJECTED_OVER
    assert status.projected_exceed_at == exceeds.replace(microsecond=0).astimezone(BERLIN)


def test_no_history_projects_nothing_and_a_key_first_seen_today_extrapolates_today():
    now = datetime(2026, 11, 10, 9, tzinfo=UTC)
    today = local_midnight(now.date(), ZoneInfo("UTC"))
    empty = project(Decimal(0), Decimal(5), now, today + timedelta(days=1), Decimal(0), today - timedelta(days=7))
    assert (empty.daily_rate_usd, empty.projected_usd, empty.exceeds_at) == (0, 0, None)
    young = project(Decimal(3), Decimal(5), now, today + timedelta(days=1), Decimal(3), today)
    assert young.daily_rate_usd == 8 and young.projected_usd == 8  # $3 in 9 hours -> $8 a day
    assert young.exceeds_at == datetime(2026, 11, 10, 15, tzinfo=UTC)  # $2 more at $1/3 per hour: 6 hours
    minutes = project(Decimal(1), Decimal(100), now, today + timedelta(days=1), Decimal(1), now - timedelta(minutes=5))
    assert minutes.daily_rate_usd == 24  # never extrapolated from less than an hour


def test_reaching_the_amount_exactly_at_the_end_is_not_exceeding_it():
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    end = datetime(2026, 11, 11, tzinfo=UTC)
    p = project(Decimal(6), Decimal(12), now, end, Decimal(6), datetime(2026, 11, 10, tzinfo=UTC))
    assert p.projected_usd == 12 and p.exceeds_at is None


def test_status_states_shares_and_thresholds_are_exact():
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    budget = Budget("key", "k", "day", Decimal("0.3"), "UTC", (50, 80, 100))
    since = datetime(2026, 11, 10, tzinfo=UTC)
    at = lambda spent: budget_status(budget, now, Decimal(spent), Decimal(0), since)  # noqa: E731
    assert at("0.24").thresholds_crossed == (50, 80) and at("0.24").used_share == Decimal("0.8")
    assert at("0.239999999999999999999999").thresholds_crossed == (50,)  # exact, no float rounding to 0.24
    assert at("0.3").state == OVER and at("0.3").thresholds_crossed == (50, 80, 100)
    assert at("0.1").state == WITHIN and at("0.1").used_share == Decimal("0.333333")
    assert at("0.2").projected_share == Decimal("0.666667")
    crossed_floor = (Decimal("0.15") / Decimal("0.3")).quantize(Decimal("0.000001"), rounding=ROUND_FLOOR)
    assert at("0.15").used_share == crossed_floor == Decimal("0.5")
