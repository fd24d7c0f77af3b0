"""Budget status on real embedded ClickHouse, filled through the real writer from a hand-built ledger: spent
so far, thresholds and the projection equal what the ledger says, across a DST change (Europe/Berlin, the
25-hour 2026-10-25), a month boundary on a period's first day, and a half-hour zone (Asia/Kolkata); and the
budgets table keeps, replaces and deletes budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from pipeline.budgets.model import BudgetKey, make_budget
from pipeline.budgets.periods import period_bounds
from pipeline.budgets.status import OVER, PROJECTED_OVER, BudgetMeter
from pipeline.budgets.store import BudgetStore
from support.budgets import PRICES, Ledger, local, reference_projection
from support.writes import bounds_at, write_events

pytestmark = pytest.mark.clickhouse

BERLIN, KOLKATA = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")


def write(client, ledger: Ledger, now: datetime, partition: int = 0) -> None:
    now_ms = int(now.timestamp() * 1000)
    landed, _, _ = write_events(client, ledger.events, now_ms, partition=partition, prices=PRICES,
                                bounds=bounds_at(now_ms))
    assert landed


def berlin_ledger() -> Ledger:
    """k-berlin: nothing on Oct 18-19, then spend every day from Oct 20, around the DST change of Oct 25
    (02:00-03:00 happens twice) and the month's end."""
    ledger = Ledger()
    for day in range(20, 25):
        for hour, usd in ((9, "1.250"), (13, "0.875"), (21, "2.000")):
            ledger.add("k-berlin", local("Europe/Berlin", 2026, 10, day, hour, 15), usd)
    ledger.add("k-berlin", local("Europe/Berlin", 2026, 10, 24, 23, 59, 59), "0.500")  # the day before
    ledger.add("k-berlin", local("Europe/Berlin", 2026, 10, 25, 0, 0, 0), "0.125")  # the first instant of the day
    ledger.add("k-berlin", datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "1.000")  # 02:30+02:00
    ledger.add("k-berlin", datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "1.000")  # 02:30+01:00, the repeated hour
    ledger.add("k-berlin", local("Europe/Berlin", 2026, 10, 25, 14, 0), "3.000")
    for day in range(26, 32):
        ledger.add("k-berlin", local("Europe/Berlin", 2026, 10, day, 12, 0), "4.000")
    ledger.add("k-berlin", local("Europe/Berlin", 2026, 10, 31, 23, 59, 59), "0.750")  # last second of October
    ledger.add("k-berlin", local("Europe/Berlin", 2026, 11, 1, 0, 10), "0.250")  # ten minutes into November
    return ledger


@pytest.fixture
def berlin(clickhouse):
    ledger = berlin_ledger()
    write(clickhouse, ledger, datetime(2026, 11, 1, 0, tzinfo=UTC))
    return clickhouse, ledger


def assert_status_is_the_ledgers(status, ledger: Ledger, now: datetime, zone: ZoneInfo) -> None:
    budget = status.budget
    start, end = period_bounds(budget.period, zone, now)
    spent = ledger.spent(budget.scope_id, start, now)
    trend, since = ledger.trend(budget.scope_id, zone, now)
    expected = reference_projection(spent, budget.amount_usd, trend, since, now, end)
    assert (status.period_start, status.period_end) == (start, end)
    assert status.spent_usd == spent
    assert status.thresholds_crossed == tuple(t for t in budget.thresholds if spent * 100 >= budget.amount_usd * t)
    assert status.trend_since == since
    assert (status.daily_rate_usd, status.projected_usd) == (expected.daily_rate_usd, expected.projected_usd)
    assert status.projected_exceed_at == (expected.exceeds_at and expected.exceeds_at.astimezone(zone))


def test_a_daily_budget_over_the_25_hour_dst_day_equals_the_ledger(berlin):
    client, ledger = berlin
    now = local("Europe/Berlin", 2026, 10, 25, 14, 30)  # 13:30 UTC, after the clocks went back
    budget = make_budget("key", "k-berlin", "day", "6.5", "Europe/Berlin")
    status = BudgetMeter(client).status(budget, now)
    assert_status_is_the_ledgers(status, ledger, now, BERLIN)
    # 00:00:00 is in, 23:59:59 the day before is not; both 02:30s are in
    assert status.spent_usd == Decimal("5.125") and status.thresholds_crossed == (50,)
    assert status.period_end.astimezone(UTC) - status.period_start.astimezone(UTC) == timedelta(hours=25)
    assert status.trend_since.isoformat() == "2026-10-20T00:00:00+02:00"  # Oct 18-19 had no spend
    assert status.state == PROJECTED_OVER and status.projected_exceed_at.date().isoformat() == "2026-10-25"


def test_weekly_and_monthly_budgets_across_the_dst_change_equal_the_ledger(berlin):
    client, ledger = berlin
    now = local("Europe/Berlin", 2026, 10, 25, 14, 30)
    meter = BudgetMeter(client)
    week = meter.status(make_budget("key", "k-berlin", "week", "30", "Europe/Berlin", "50,80,100,120"), now)
    assert week.period_start.isoformat() == "2026-10-19T00:00:00+02:00"  # Monday
    assert_status_is_the_ledgers(week, ledger, now, BERLIN)
    assert week.spent_usd == Decimal("26.25") and week.thresholds_crossed == (50, 80)
    month = meter.status(make_budget("key", "k-berlin", "month", "20", "Europe/Berlin"), now)
    assert_status_is_the_ledgers(month, ledger, now, BERLIN)
    assert month.state == OVER and month.projected_exceed_at is None


def test_the_first_day_of_a_month_projects_from_the_days_before(berlin):
    """30 minutes into November: October's last second is not this month's; the ten minutes in are."""
    client, ledger = berlin
    now = local("Europe/Berlin", 2026, 11, 1, 0, 30)
    status = BudgetMeter(client).status(make_budget("key", "k-berlin", "month", "150", "Europe/Berlin"), now)
    assert_status_is_the_ledgers(status, ledger, now, BERLIN)
    assert status.spent_usd == Decimal("0.25") and status.period_start.isoformat() == "2026-11-01T00:00:00+01:00"
    assert status.trend_since.isoformat() == "2026-10-25T00:00:00+02:00" and status.daily_rate_usd > 3


def test_a_key_without_history_projects_nothing(berlin):
    client, _ = berlin
    status = BudgetMeter(client).status(make_budget("key", "nobody", "month", "10"), datetime(2026, 11, 1, tzinfo=UTC))
    assert (status.spent_usd, status.daily_rate_usd, status.projected_usd, status.projected_exceed_at) == (0, 0, 0, None)
    assert status.state == "within" and status.thresholds_crossed == ()


def test_a_kolkata_day_starts_at_local_midnight(clickhouse):
    """Asia/Kolkata is UTC+05:30: its day starts at 18:30 UTC, inside a stored UTC hour. The truth counts a
    request at 00:10 local in the new day and one at 23:45 the evening before in the old one."""
    ledger = Ledger()
    for day in range(1, 5):
        ledger.add("k-kolkata", local("Asia/Kolkata", 2026, 11, day, 0, 15), "1.000")  # 18:45 UTC the day before
        ledger.add("k-kolkata", local("Asia/Kolkata", 2026, 11, day, 11, 0), "2.000")
    ledger.add("k-kolkata", local("Asia/Kolkata", 2026, 11, 4, 23, 45), "0.500")  # 18:15 UTC: the day before
    ledger.add("k-kolkata", local("Asia/Kolkata", 2026, 11, 5, 0, 10), "0.250")  # 18:40 UTC: this day
    ledger.add("k-kolkata", local("Asia/Kolkata", 2026, 11, 5, 9, 0), "1.000")
    now = local("Asia/Kolkata", 2026, 11, 5, 12, 0)
    write(clickhouse, ledger, now)
    status = BudgetMeter(clickhouse).status(make_budget("key", "k-kolkata", "day", "2", "Asia/Kolkata"), now)
    assert status.period_start.astimezone(UTC) == datetime(2026, 11, 4, 18, 30, tzinfo=UTC)
    assert_status_is_the_ledgers(status, ledger, now, KOLKATA)
    assert status.spent_usd == Decimal("1.25") and status.thresholds_crossed == (50,)


def test_org_and_project_budgets_sum_their_keys(clickhouse):
    ledger = Ledger()
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)
    ledger.add("k1", now - timedelta(hours=2), "1.5", org="org-1", project="p-1")
    ledger.add("k2", now - timedelta(hours=1), "2.25", org="org-1", project="p-2")
    ledger.add("k3", now - timedelta(hours=1), "9", org="org-2", project="p-2")
    write(clickhouse, ledger, now)
    meter = BudgetMeter(clickhouse)
    assert meter.status(make_budget("org", "org-1", "day", "10"), now).spent_usd == Decimal("3.75")
    assert meter.status(make_budget("project", "p-2", "day", "10"), now).spent_usd == Decimal("11.25")


def test_the_store_keeps_replaces_and_deletes_budgets(clickhouse):
    store = BudgetStore(clickhouse)
    t0 = datetime(2026, 11, 10, 12, tzinfo=UTC)
    store.put(make_budget("key", "k1", "month", "100", "Europe/Berlin"), t0)
    store.put(make_budget("key", "k1", "day", "5"), t0)
    store.put(make_budget("org", "org-1", "week", "700", thresholds="90"), t0)
    assert [(b.scope, b.scope_id, b.period) for b in store.list()] == [
        ("key", "k1", "day"), ("key", "k1", "month"), ("org", "org-1", "week")]
    # a change in the same millisecond (or with the clock behind) still wins: versions only go up
    store.put(make_budget("key", "k1", "month", "120.5", "Europe/Berlin", "75"), t0 - timedelta(seconds=5))
    changed = store.get(BudgetKey("key", "k1", "month"))
    assert (changed.amount_usd, changed.thresholds) == (Decimal("120.5"), (75,))
    assert [b.period for b in store.delete("key", "k1", "day", t0)] == ["day"]
    assert store.delete("key", "k1", "day", t0) == []
    assert [b.period for b in store.list("key", "k1")] == ["month"]
    store.put(make_budget("key", "k1", "day", "6"), t0)  # a deleted budget can be set again
    assert store.get(BudgetKey("key", "k1", "day")).amount_usd == 6
    assert [b.period for b in store.delete("key", "k1", None, t0)] == ["day", "month"]
    assert store.list("key", "k1") == [] and len(store.list()) == 1
