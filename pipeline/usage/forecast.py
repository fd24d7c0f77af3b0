"""Spend so far in a period and where the recent trend leads by its end: meterline's one projection rule.

Budgets (pipeline/budgets/status.py) and the usage API's month to date (``UsageQueries`` answers, route
``month-to-date``) both project with it, so a key owner never sees two forecasts of the same money disagree.
docs/alerts.md ("Budgets") states the rule in prose; in short, for a scope evaluated at ``now`` in a period
[start, end) of a zone:

* **trend window**: from local midnight ``trend_days`` (default 7) days before today to ``now``, i.e. the
  last ``trend_days`` complete local days plus today so far, ignoring period boundaries (a key's pace does
  not reset on the 1st). Leading days without spend are dropped: the window starts at local midnight of its
  first day with spend, so a key first used two days ago is averaged over those two days, not seven. It is at
  least one hour long (no extrapolation from a few minutes).
* **rate** = spend in the trend window / its real length (DST days count 23 or 25 hours);
* **projected** = spent so far + rate x (end - now);
* **exceeds at** (only against an amount): when spent < amount and rate > 0, the instant spent + rate x t
  reaches the amount, if that is before the period's end (rounded down to the second).

Spend comes from the usage query module (``UsageQueries.summary`` and ``.series``), never from SQL of our own,
so whatever rule that module follows for which stored usage falls in a range applies here unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

from pipeline.budgets.periods import MICROSECOND, local_midnight, microseconds_between, period_bounds
from pipeline.usage.query import Freshness, UsageQueries
from pipeline.usage.ranges import UsageRequest

DEFAULT_TREND_DAYS = 7
MIN_TREND_WINDOW = timedelta(hours=1)
USD_PLACES = Decimal("0.000001")  # projected amounts and rates: an estimate, to a millionth of a dollar
DAY_US = 86_400_000_000
PRECISION = 80  # enough for Decimal(38, 24) amounts divided by microsecond counts


@dataclass(frozen=True)
class Projection:
    """The trend and where it leads. Amounts in USD, rounded half-even to a millionth."""

    trend_since: datetime  # start of the trend window (aware, the scope's zone)
    trend_spend_usd: Decimal  # exact spend in [trend_since, now)
    daily_rate_usd: Decimal  # rate x 24 real hours
    projected_usd: Decimal  # at the period's end
    exceeds_at: datetime | None  # when the projection reaches the amount, if before the period's end


def project(spent: Decimal, amount: Decimal | None, now: datetime, period_end: datetime, trend_spend: Decimal,
            trend_since: datetime) -> Projection:
    """The projection rule of this module's docstring; pure, exact until the final rounding. Without an
    ``amount`` (a month to date, not a budget) ``exceeds_at`` is None."""
    window_us = max(microseconds_between(trend_since, now), MIN_TREND_WINDOW // MICROSECOND)
    remaining_us = max(microseconds_between(now, period_end), 0)
    exceeds_at = None
    with localcontext() as context:
        context.prec = PRECISION
        rate = trend_spend / window_us  # USD per microsecond
        projected = spent + rate * remaining_us
        if amount is not None and spent < amount and rate > 0:
            needed_us = (amount - spent) / rate
            if needed_us < remaining_us:
                # in UTC: adding a timedelta to a zoned datetime would add wall-clock time across DST
                moment = now.astimezone(timezone.utc) + timedelta(microseconds=int(needed_us))
                exceeds_at = moment.replace(microsecond=0).astimezone(period_end.tzinfo)
        daily = rate * DAY_US
    return Projection(trend_since, trend_spend, round_half_even(daily, USD_PLACES),
                      round_half_even(projected, USD_PLACES), exceeds_at)


def round_half_even(value: Decimal, places: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = PRECISION
        return value.quantize(places, rounding=ROUND_HALF_EVEN)


class SpendTrend:
    """A scope's spend in a period and its trend window, through the usage query module. Synchronous: give it
    its own thread (``ClickHouse.run``)."""

    def __init__(self, queries: UsageQueries, trend_days: int = DEFAULT_TREND_DAYS) -> None:
        if trend_days < 1:
            raise ValueError("trend_days must be at least 1")
        self._queries = queries
        self.trend_days = trend_days

    def spent(self, scope: str, scope_id: str, tz: str, start: datetime, now: datetime) -> Decimal:
        """Exact cost in USD of the scope's usage in [start, now); 0 when now <= start."""
        if now <= start:
            return Decimal(0)
        return self._queries.summary(UsageRequest(scope, scope_id, start, now, tz, "day")).totals.total_cost

    def trend(self, scope: str, scope_id: str, tz: str, now: datetime) -> tuple[Decimal, datetime]:
        """(spend, start) of the trend window: from its first local day with spend to ``now``."""
        zone = ZoneInfo(tz)
        first = local_midnight(now.astimezone(zone).date() - timedelta(days=self.trend_days), zone)
        series = self._queries.series(UsageRequest(scope, scope_id, first, now, tz, "day"))
        spending = [b for b in series.buckets if b.total_cost > 0]
        if not spending:
            return Decimal(0), first
        since = spending[0].start
        return sum((b.total_cost for b in series.buckets if b.start >= since), Decimal(0)), since

    def month_to_date(self, scope: str, scope_id: str, tz: str, now: datetime) -> "MonthToDate":
        """The calendar month of ``now`` in ``tz``: spent so far and the month-end projection (three queries:
        the summary of [month start, now) and the daily series of the trend window)."""
        zone = ZoneInfo(tz)
        now = now.astimezone(zone)
        start, end = period_bounds("month", zone, now)
        spent = self.spent(scope, scope_id, tz, start, now)
        trend_spend, since = self.trend(scope, scope_id, tz, now)
        projection = project(spent, None, now, end, trend_spend, since)
        return MonthToDate(scope, scope_id, tz, now.astimezone(timezone.utc), start, end, spent, self.trend_days,
                           projection.trend_since, projection.trend_spend_usd, projection.daily_rate_usd,
                           projection.projected_usd, self._queries.freshness())


@dataclass(frozen=True)
class MonthToDate:
    """A scope's cost in the current calendar month of ``tz`` and its projection to the month's end.

    ``spent_usd``: exact cost of [month_start, as_of). ``projected_usd`` = spent + ``daily_rate_usd`` / 24 h x
    the real time left until ``month_end`` (the budgets' projection rule, docs/alerts.md); ``daily_rate_usd`` =
    ``trend_spend_usd`` (exact spend in [trend_since, as_of)) over that window's real length (at least an
    hour), x 24 h. The window is the last ``trend_days`` complete local days and today so far, from its first
    day with spend. Estimates are rounded half-even to a millionth of a dollar."""

    scope: str
    scope_id: str
    tz: str
    as_of: datetime  # UTC
    month_start: datetime  # aware, in tz
    month_end: datetime  # exclusive
    spent_usd: Decimal
    trend_days: int
    trend_since: datetime
    trend_spend_usd: Decimal
    daily_rate_usd: Decimal
    projected_usd: Decimal
    freshness: Freshness  # how final spent_usd is (docs/usage-queries.md)
