"""A budget's status at an instant: spent so far this period (exact), share used, thresholds crossed, and a
projection to the period's end from the recent trend (docs/alerts.md, "Budgets", says the same in prose).

Spend comes from the usage query module (``UsageQueries.summary`` and ``.series``), never from SQL of our
own, so whatever rule that module follows for which stored usage falls in a range (today: the UTC hours
starting in it) applies to budgets unchanged.

The projection, for a budget evaluated at ``now`` in period [start, end):

* **trend window**: from local midnight ``trend_days`` (default 7) days before today to ``now``, i.e. the
  last ``trend_days`` complete local days plus today so far, ignoring period boundaries (the key's pace does
  not reset on the 1st). Leading days without spend are dropped: the window starts at local midnight of its
  first day with spend, so a key first used two days ago is averaged over those two days, not seven. It is at
  least one hour long (no extrapolation from a few minutes).
* **rate** = spend in the trend window / its real length (DST days count 23 or 25 hours);
* **projected** = spent so far + rate x (end - now);
* **exceeds on**: when spent < amount and rate > 0, the instant spent + rate x t reaches the amount, if that is
  before the period's end (rounded down to the second).

So on a period's first day the projection uses the previous days' pace; a key with no spend in the window
(no history, or idle for a week) projects no further spend; a key first used today extrapolates today's
spend since local midnight (at least one hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from pipeline.budgets.model import Budget
from pipeline.budgets.periods import MICROSECOND, local_midnight, microseconds_between, period_bounds
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import UsageRequest

DEFAULT_TREND_DAYS = 7
MIN_TREND_WINDOW = timedelta(hours=1)
USD_PLACES = Decimal("0.000001")  # projected amounts and rates: an estimate, to a millionth of a dollar
SHARE_PLACES = Decimal("0.000001")  # shares of the amount (0.5 = 50%)
_DAY_US = 86_400_000_000
_PRECISION = 80  # enough for Decimal(38, 24) amounts divided by microsecond counts

WITHIN, PROJECTED_OVER, OVER = "within", "projected_over", "over"
STATES = (WITHIN, PROJECTED_OVER, OVER)


@dataclass(frozen=True)
class Projection:
    """The trend and where it leads. Amounts in USD, rounded half-even to a millionth."""

    trend_since: datetime  # start of the trend window (aware, budget's zone)
    trend_spend_usd: Decimal  # exact spend in [trend_since, now)
    daily_rate_usd: Decimal  # rate x 24 real hours
    projected_usd: Decimal  # at the period's end
    exceeds_at: datetime | None  # when the projection reaches the amount, if before the period's end


def project(spent: Decimal, amount: Decimal, now: datetime, period_end: datetime, trend_spend: Decimal,
            trend_since: datetime) -> Projection:
    """The projection rule of this module's docstring; pure, exact until the final rounding."""
    window_us = max(microseconds_between(trend_since, now), MIN_TREND_WINDOW // MICROSECOND)
    remaining_us = max(microseconds_between(now, period_end), 0)
    exceeds_at = None
    with localcontext() as context:
        context.prec = _PRECISION
        rate = trend_spend / window_us  # USD per microsecond
        projected = spent + rate * remaining_us
        if spent < amount and rate > 0:
            needed_us = (amount - spent) / rate
            if needed_us < remaining_us:
                # in UTC: adding a timedelta to a zoned datetime would add wall-clock time across DST
                moment = now.astimezone(timezone.utc) + timedelta(microseconds=int(needed_us))
                exceeds_at = moment.replace(microsecond=0).astimezone(period_end.tzinfo)
        daily = rate * _DAY_US
    return Projection(trend_since, trend_spend, _round(daily, USD_PLACES), _round(projected, USD_PLACES),
                      exceeds_at)


@dataclass(frozen=True)
class BudgetStatus:
    """A budget at ``as_of``. ``used_share`` = spent / amount and ``projected_share`` = projected / amount,
    rounded half-even to 6 places (0.5 = 50%). ``thresholds_crossed``: the thresholds with spent >= amount x
    threshold / 100 (exact). ``state``: over (spent >= amount), projected_over (the projection exceeds the
    amount before the period ends) or within."""

    budget: Budget
    as_of: datetime  # UTC
    period_start: datetime  # aware, budget's zone
    period_end: datetime  # exclusive
    spent_usd: Decimal  # exact, from the rollups
    used_share: Decimal
    thresholds_crossed: tuple[int, ...]
    state: str
    trend_since: datetime
    daily_rate_usd: Decimal
    projected_usd: Decimal
    projected_share: Decimal
    projected_exceed_at: datetime | None  # aware, budget's zone


def budget_status(budget: Budget, now: datetime, spent: Decimal, trend_spend: Decimal,
                  trend_since: datetime) -> BudgetStatus:
    """Assemble a status from the spend figures (pure)."""
    zone = ZoneInfo(budget.tz)
    start, end = period_bounds(budget.period, zone, now)
    p = project(spent, budget.amount_usd, now, end, trend_spend, trend_since)
    crossed = tuple(t for t in budget.thresholds if spent * 100 >= budget.amount_usd * t)
    state = OVER if spent >= budget.amount_usd else PROJECTED_OVER if p.exceeds_at is not None else WITHIN
    return BudgetStatus(
        budget=budget, as_of=now.astimezone(timezone.utc), period_start=start, period_end=end, spent_usd=spent,
        used_share=_share(spent, budget.amount_usd), thresholds_crossed=crossed, state=state,
        trend_since=p.trend_since, daily_rate_usd=p.daily_rate_usd, projected_usd=p.projected_usd,
        projected_share=_share(p.projected_usd, budget.amount_usd),
        projected_exceed_at=p.exceeds_at)


class BudgetMeter:
    """Computes statuses with the usage query module. Synchronous: give it its own thread (ClickHouse.run)."""

    def __init__(self, client: Client, trend_days: int = DEFAULT_TREND_DAYS) -> None:
        if trend_days < 1:
            raise ValueError("trend_days must be at least 1")
        self._queries = UsageQueries(client)
        self._trend_days = trend_days

    def status(self, budget: Budget, now: datetime) -> BudgetStatus:
        """Two queries: the summary of [period start, now) and the daily series of the trend window."""
        zone = ZoneInfo(budget.tz)
        now = now.astimezone(zone)
        start, _ = period_bounds(budget.period, zone, now)
        spent = self._spent(budget, start, now)
        trend_spend, trend_since = self._trend(budget, zone, now)
        return budget_status(budget, now, spent, trend_spend, trend_since)

    def statuses(self, budgets: list[Budget], now: datetime) -> list[BudgetStatus]:
        return [self.status(budget, now) for budget in budgets]

    def _spent(self, budget: Budget, start: datetime, now: datetime) -> Decimal:
        if now <= start:
            return Decimal(0)
        summary = self._queries.summary(UsageRequest(budget.scope, budget.scope_id, start, now, budget.tz, "day"))
        return summary.totals.total_cost

    def _trend(self, budget: Budget, zone: ZoneInfo, now: datetime) -> tuple[Decimal, datetime]:
        """(spend, start) of the trend window: from its first local day with spend to now."""
        today = now.date()
        first = local_midnight(today - timedelta(days=self._trend_days), zone)
        series = self._queries.series(UsageRequest(budget.scope, budget.scope_id, first, now, budget.tz, "day"))
        spending = [b for b in series.buckets if b.total_cost > 0]
        if not spending:
            return Decimal(0), first
        since = spending[0].start
        return sum((b.total_cost for b in series.buckets if b.start >= since), Decimal(0)), since


def _share(part: Decimal, whole: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = _PRECISION
        return (part / whole).quantize(SHARE_PLACES, rounding=ROUND_HALF_EVEN)


def _round(value: Decimal, places: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = _PRECISION
        return value.quantize(places, rounding=ROUND_HALF_EVEN)
