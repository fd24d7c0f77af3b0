"""Which budget notifications each channel is owed (pure): the highest threshold crossed, once; the forecast
once while the budget is not yet exceeded; claims in flight are left alone, released or abandoned ones are
taken over with the next attempt; a new period and a changed amount start clean."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipeline.alerts.budget_notice import FORECAST, THRESHOLD, NotificationKey
from pipeline.alerts.budget_state import UnitState
from pipeline.alerts.budgets import DueUnit, due_units
from pipeline.budgets.model import Budget
from pipeline.budgets.status import budget_status

NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)
DAY_START = datetime(2026, 11, 10, tzinfo=UTC)
CHANNELS = ["alertmanager", "slack"]


def status(spent: str, amount: str = "100", trend: str = "0", now: datetime = NOW):
    budget = Budget("key", "k1", "day", Decimal(amount), "UTC", (50, 80, 100))
    return budget_status(budget, now, Decimal(spent), Decimal(trend), now.replace(hour=0))


def key(kind: str = THRESHOLD, threshold: int = 80, amount: str = "100", start: datetime = DAY_START):
    return NotificationKey("key", "k1", "day", start, kind, threshold if kind == THRESHOLD else 0, Decimal(amount))


def sent() -> UnitState:
    return UnitState(attempt=0, owner="a", lease_until=NOW - timedelta(minutes=5), sent=True)


def test_the_highest_threshold_crossed_is_due_on_every_channel():
    assert due_units([status("85")], CHANNELS, {}, NOW) == [DueUnit(key(), c, 0) for c in CHANNELS]
    assert due_units([status("49.99")], CHANNELS, {}, NOW) == []


def test_a_threshold_or_a_higher_one_already_sent_covers_it_per_channel():
    assert due_units([status("85")], CHANNELS, {(key(), "slack"): sent()}, NOW) == [DueUnit(key(), "alertmanager", 0)]
    above = {(key(threshold=100), c): sent() for c in CHANNELS}
    assert due_units([status("85")], CHANNELS, above, NOW) == []
    below = {(key(threshold=50), c): sent() for c in CHANNELS}  # 50% was told; now 80% is due
    assert due_units([status("85")], CHANNELS, below, NOW) == [DueUnit(key(), c, 0) for c in CHANNELS]


def test_claims_in_flight_are_left_alone_and_released_or_abandoned_ones_taken_over():
    live = UnitState(attempt=0, owner="other", lease_until=NOW + timedelta(seconds=30))
    released = UnitState(attempt=2, owner="other", lease_until=NOW + timedelta(seconds=30), released=True)
    abandoned = UnitState(attempt=0, owner="dead", lease_until=NOW - timedelta(seconds=1))
    units = {(key(), "alertmanager"): live, (key(), "slack"): released}
    assert due_units([status("85")], CHANNELS, units, NOW) == [DueUnit(key(), "slack", 3)]
    units = {(key(), "alertmanager"): abandoned, (key(), "slack"): sent()}
    assert due_units([status("85")], CHANNELS, units, NOW) == [DueUnit(key(), "alertmanager", 1)]
    # a live claim on a higher threshold also covers this one
    higher = {(key(threshold=100), c): live for c in CHANNELS}
    assert due_units([status("85")], CHANNELS, higher, NOW) == []


def test_the_forecast_is_due_once_while_the_budget_is_not_yet_exceeded():
    # $40 spent by noon at $10/h since midnight: projected $160 by midnight, exceeding $100 at 18:00
    ahead = status("40", trend="120")
    assert ahead.projected_exceed_at == datetime(2026, 11, 10, 18, tzinfo=UTC)
    assert due_units([ahead], ["slack"], {}, NOW) == [DueUnit(key(FORECAST), "slack", 0)]
    assert due_units([ahead], ["slack"], {(key(FORECAST), "slack"): sent()}, NOW) == []
    over = status("100", trend="300")  # exceeded: the 100% threshold says it, not the forecast
    assert due_units([over], ["slack"], {}, NOW) == [DueUnit(key(threshold=100), "slack", 0)]


def test_a_new_period_and_a_changed_amount_start_clean():
    told = {(key(), "slack"): sent()}
    tomorrow = NOW + timedelta(days=1)
    assert due_units([status("85", now=tomorrow)], ["slack"], told, tomorrow) == [
        DueUnit(key(start=DAY_START + timedelta(days=1)), "slack", 0)]
    assert due_units([status("85", amount="105")], ["slack"], told, NOW) == [
        DueUnit(key(amount="105"), "slack", 0)]
    # a lower amount: the thresholds crossed against it are due at the next evaluation
    assert due_units([status("85", amount="80")], ["slack"], told, NOW) == [
        DueUnit(key(threshold=100, amount="80"), "slack", 0)]
