"""A budget's status at an instant: spent so far this period (exact), share used, thresholds crossed, and a
projection to the period's end from the recent trend (docs/alerts.md, "Budgets", says the same in prose).

Spend and the projection come from :mod:`pipeline.usage.forecast`, which holds meterline's one projection rule
(the usage API's month to date uses it too) and reads spend through the usage query module, never with SQL of
its own. So on a period's first day the projection uses the previous days' pace; a key with no spend in the
window (no history, or idle for a week) projects no further spend; a key first used today extrapolates today's
spend since local midnight (at least one hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from pipeline.budgets.model import Budget
from pipeline.budgets.periods import period_bounds
from pipeline.usage.forecast import (DEFAULT_TREND_DAYS, MIN_TREND_WINDOW, PRECISION, Projection, SpendTrend,
                                     project)
from pipeline.usage.query import UsageQueries

SHARE_PLACES = Decimal("0.000001")  # shares of the amount (0.5 = 50%)

WITHIN, PROJECTED_OVER, OVER = "within", "projected_over", "over"
STATES = (WITHIN, PROJECTED_OVER, OVER)
__all__ = ["DEFAULT_TREND_DAYS", "MIN_TREND_WINDOW", "Projection", "project", "BudgetStatus", "budget_status",
           "BudgetMeter", "STATES", "WITHIN", "PROJECTED_OVER", "OVER"]


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
        self._spend = SpendTrend(UsageQueries(client), trend_days)

    def status(self, budget: Budget, now: datetime) -> BudgetStatus:
        """Two queries: the summary of [period start, now) and the daily series of the trend window."""
        zone = ZoneInfo(budget.tz)
        now = now.astimezone(zone)
        start, _ = period_bounds(budget.period, zone, now)
        spent = self._spend.spent(budget.scope, budget.scope_id, budget.tz, start, now)
        trend_spend, trend_since = self._spend.trend(budget.scope, budget.scope_id, budget.tz, now)
        return budget_status(budget, now, spent, trend_spend, trend_since)

    def statuses(self, budgets: list[Budget], now: datetime) -> list[BudgetStatus]:
        return [self.status(budget, now) for budget in budgets]


def _share(part: Decimal, whole: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = PRECISION
        return (part / whole).quantize(SHARE_PLACES, rounding=ROUND_HALF_EVEN)
