"""Budget notifications end to end: real embedded ClickHouse filled through the real writer, the alert runner,
and real local HTTP receivers for every channel format. Each notification is sent once per budget, period,
threshold (or forecast) and amount: across runs, across a restart, with two runners racing for it, and after a
channel failed; a new period starts clean and a changed amount is taken into account at the next run."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from pipeline import cli
from pipeline.alerts.budget_notice import THRESHOLD, NotificationKey
from pipeline.alerts.budget_state import NotificationLog
from pipeline.alerts.channels import RetryPolicy, channels_from_settings
from pipeline.alerts.metrics import AlertMetrics
from pipeline.alerts.rules import RuleSet
from pipeline.alerts.runner import AlertRunner
from pipeline.budgets.model import make_budget
from pipeline.budgets.store import BudgetStore
from pipeline.clickhouse import ClickHouse, connect
from pipeline.config import AlertSettings
from support.alertmanager import Receiver
from support.budgets import PRICES, Ledger
from support.writes import bounds_at, write_events

pytestmark = pytest.mark.clickhouse

DAY = datetime(2026, 11, 10, tzinfo=UTC)
CHANNELS = ("alertmanager", "webhook", "slack", "pagerduty")
QUIET_SPIKES = dict(min_tokens=1e12, min_requests=1e12, min_cost_usd=1e12, new_key_tokens=1e12,
                    new_key_requests=1e12, new_key_cost_usd=1e12)  # budgets only: no spike alert can fire


class Store:
    """The test database: written through the worker's writer, read by as many runners as a test builds."""

    def __init__(self, client, url: str) -> None:
        self.client, self.url, self.ledger, self._partition = client, url, Ledger(), 0
        self._handles: list[ClickHouse] = []

    def spend(self, key: str, at: datetime, usd: str, **scope) -> None:
        self._partition += 1
        event = self.ledger.add(key, at, usd, **scope)
        now_ms = int(at.timestamp() * 1000)
        assert write_events(self.client, [event], now_ms, partition=self._partition, prices=PRICES,
                            bounds=bounds_at(now_ms))[0]

    def handle(self) -> ClickHouse:
        handle = ClickHouse(connect(self.url))
        self._handles.append(handle)
        return handle

    def close(self) -> None:
        for handle in self._handles:
            handle.close()


@pytest.fixture
def store(clickhouse, clickhouse_url):
    s = Store(clickhouse, clickhouse_url)
    yield s
    s.close()


@pytest.fixture
async def receivers():
    started = {name: await Receiver().start() for name in CHANNELS}
    yield started
    for receiver in started.values():
        await receiver.stop()


def settings_for(receivers: dict[str, Receiver], lease_s: float = 60) -> AlertSettings:
    return AlertSettings(**QUIET_SPIKES, alertmanager_url=receivers["alertmanager"].url,
                         webhook_url=receivers["webhook"].url, slack_webhook_url=receivers["slack"].url,
                         pagerduty_routing_key="routing-key-1", pagerduty_url=receivers["pagerduty"].url,
                         grafana_url="https://grafana.test", runbook_url="https://runbooks.test/budget",
                         budget_claim_lease_s=lease_s)


def new_runner(store: Store, settings: AlertSettings) -> tuple[AlertRunner, CollectorRegistry]:
    """A runner as a fresh process builds it (its own ClickHouse handle and owner id)."""
    registry = CollectorRegistry()
    runner = AlertRunner(store.handle(), settings, RuleSet(), channels_from_settings(settings), AlertMetrics(registry),
                         retry=RetryPolicy(attempts=2, timeout_s=5, backoff_initial_s=0.05))
    return runner, registry


def budget_notices(receivers: dict[str, Receiver]) -> dict[str, list[tuple[str, str]]]:
    """Per channel, the (kind, threshold) of every budget notification it received, in order."""
    seen: dict[str, list[tuple[str, str]]] = {name: [] for name in CHANNELS}
    for body in receivers["alertmanager"].bodies:
        seen["alertmanager"] += [(a["labels"]["kind"], a["labels"]["threshold"]) for a in body]
    for body in receivers["webhook"].bodies:
        seen["webhook"] += [(a["labels"]["kind"], a["labels"]["threshold"]) for a in body["alerts"]]
    for body in receivers["pagerduty"].bodies:
        details = body["payload"]["custom_details"]
        seen["pagerduty"].append((details["kind"], str(details["threshold"])))
    for body in receivers["slack"].bodies:
        kind = "forecast" if "forecast" in body["text"] else "threshold"
        seen["slack"].append((kind, body["text"].split("(")[-1].split("%")[0] if kind == "threshold" else "0"))
    return seen


async def test_each_threshold_and_the_forecast_are_sent_once_per_channel(store, receivers):
    BudgetStore(store.client).put(make_budget("key", "k1", "day", "10"), DAY)
    runner, registry = new_runner(store, settings_for(receivers))
    store.spend("k1", DAY + timedelta(hours=2), "4")
    report = await runner.run_once(DAY + timedelta(hours=10))  # $4 by 10:00: 40%, projected $9.60
    assert report.budgets.budgets == 1 and report.budgets.sent == [] and report.budgets.states == {"within": 1}
    store.spend("k1", DAY + timedelta(hours=10, minutes=1), "2")
    report = await runner.run_once(DAY + timedelta(hours=10, minutes=5))  # $6: 50%, and on course for $14.40
    assert Counter(k.kind for k, _ in report.budgets.sent) == {"threshold": 4, "forecast": 4}
    await runner.run_once(DAY + timedelta(hours=10, minutes=6))  # nothing new
    store.spend("k1", DAY + timedelta(hours=11), "2.5")
    store.spend("k1", DAY + timedelta(hours=11, minutes=30), "4")  # $8.50 then $12.50: 80% and 100% at once
    await runner.run_once(DAY + timedelta(hours=12))
    await runner.run_once(DAY + timedelta(hours=12, minutes=1))
    expected = [("threshold", "50"), ("forecast", "0"), ("threshold", "100")]
    assert {name: sorted(found) for name, found in budget_notices(receivers).items()} == {
        name: sorted(expected) for name in CHANNELS}
    assert registry.get_sample_value("meterline_budget_notifications_sent_total",
                                     {"channel": "slack", "kind": "threshold"}) == 2
    assert registry.get_sample_value("meterline_budgets", {"state": "over"}) == 1
    await runner.close()


async def test_payloads_carry_the_budget_figures(store, receivers):
    BudgetStore(store.client).put(make_budget("key", "k1", "day", "10", "Europe/Berlin", "80"), DAY)
    store.spend("k1", DAY + timedelta(hours=2), "8.5")
    runner, _ = new_runner(store, settings_for(receivers))
    await runner.run_once(DAY + timedelta(hours=3))  # 04:00 in Berlin
    await runner.close()
    [am] = [a for body in receivers["alertmanager"].bodies for a in body if a["labels"]["kind"] == "threshold"]
    assert am["labels"] == {"alertname": "MeterlineBudget", "scope": "key", "scope_id": "k1", "api_key_id": "k1",
                            "period": "day", "period_start": "2026-11-10", "kind": "threshold", "threshold": "80",
                            "budget_usd": "10", "severity": "warning"}
    assert am["annotations"]["summary"] == "Budget: key k1 at 85.0% of its daily budget of $10.00 (80% threshold)"
    assert am["annotations"]["dashboard_url"] == "https://grafana.test/d/meterline-key-usage?var-key=k1"
    assert (am["startsAt"], am["endsAt"]) == ("2026-11-10T03:00:00.000Z", "2026-11-10T23:00:00.000Z")
    [hook] = [a for a in receivers["webhook"].bodies[0]["alerts"] if a["labels"]["kind"] == "threshold"]
    assert hook["dedupKey"] == "meterline/budget/key/k1/day/2026-11-09T23:00:00Z/threshold/80/10"
    assert hook["details"]["spent_usd"] == "8.5" and hook["details"]["amount_usd"] == "10"
    assert hook["details"]["period_start"] == "2026-11-10T00:00:00+01:00"
    [page] = [e for e in receivers["pagerduty"].bodies if e["payload"]["custom_details"]["kind"] == "threshold"]
    assert page["dedup_key"] == hook["dedupKey"] and page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "warning" and page["payload"]["source"] == "meterline"
    [forecast] = [m for m in receivers["slack"].bodies if "forecast" in m["text"]]
    assert forecast["text"].startswith("[FIRING] Budget forecast: key k1 is projected to exceed its daily budget of "
                                       "$10.00 on 2026-11-10")


async def test_a_restarted_runner_does_not_repeat_and_a_new_period_starts_clean(store, receivers):
    BudgetStore(store.client).put(make_budget("key", "k1", "day", "10", thresholds="50"), DAY)
    store.spend("k1", DAY + timedelta(hours=1), "6")
    runner, _ = new_runner(store, settings_for(receivers))
    await runner.run_once(DAY + timedelta(hours=20))
    await runner.close()
    restarted, _ = new_runner(store, settings_for(receivers))
    await restarted.run_once(DAY + timedelta(hours=20, minutes=1))
    assert {name: len(found) for name, found in budget_notices(receivers).items()} == dict.fromkeys(CHANNELS, 1)
    store.spend("k1", DAY + timedelta(days=1, hours=1), "5.5")  # the next day: the 50% threshold again
    await restarted.run_once(DAY + timedelta(days=1, hours=20))
    await restarted.close()
    assert {name: len(found) for name, found in budget_notices(receivers).items()} == dict.fromkeys(CHANNELS, 2)
    period_starts = {a["labels"]["period_start"] for body in receivers["alertmanager"].bodies for a in body}
    assert period_starts == {"2026-11-10", "2026-11-11"}


async def test_a_budget_changed_mid_period_is_used_at_the_next_run(store, receivers):
    budgets = BudgetStore(store.client)
    budgets.put(make_budget("key", "k1", "day", "10", thresholds="80"), DAY)
    store.spend("k1", DAY + timedelta(hours=1), "8")
    runner, _ = new_runner(store, settings_for(receivers))
    await runner.run_once(DAY + timedelta(hours=20))  # 80% of $10
    budgets.put(make_budget("key", "k1", "day", "20", thresholds="80"), DAY + timedelta(hours=20, minutes=1))
    report = await runner.run_once(DAY + timedelta(hours=20, minutes=2))  # 40% of $20: nothing
    assert report.budgets.sent == []
    store.spend("k1", DAY + timedelta(hours=20, minutes=3), "8.5")
    report = await runner.run_once(DAY + timedelta(hours=20, minutes=4))  # 82.5% of $20: notified again
    assert {(k.threshold, k.amount_usd) for k, _ in report.budgets.sent} == {(80, Decimal(20))}
    budgets.put(make_budget("key", "k1", "day", "20", thresholds="50,80"), DAY + timedelta(hours=20, minutes=5))
    report = await runner.run_once(DAY + timedelta(hours=20, minutes=6))  # 50% added: 80% already told covers it
    assert report.budgets.sent == []
    await runner.close()
    assert [a["labels"]["budget_usd"] for body in receivers["alertmanager"].bodies for a in body] == ["10", "20"]


async def test_two_runners_racing_for_the_same_notifications_send_each_once(store, receivers):
    """Both runners load the log before either claims (held at a barrier), so every claim is contested: the
    insert deduplication token lets exactly one of each pair land, and only its owner sends."""
    budgets = BudgetStore(store.client)
    for k in range(6):
        budgets.put(make_budget("key", f"k{k}", "day", "10", thresholds="50"), DAY)
        store.spend(f"k{k}", DAY + timedelta(hours=1), "7")
    settings = settings_for(receivers)
    (first, first_metrics), (second, second_metrics) = new_runner(store, settings), new_runner(store, settings)
    both_loaded = asyncio.Barrier(2)
    for runner in (first, second):
        runner.budgets._log = BarrierLog(runner.budgets._log, both_loaded)
    now = DAY + timedelta(hours=20)
    reports = await asyncio.gather(first.run_once(now), second.run_once(now))
    units = 6 * len(CHANNELS)
    assert sum(r.budgets.claimed for r in reports) == units and sum(r.budgets.lost for r in reports) == units
    sent = Counter((k.scope_id, channel) for r in reports for k, channel in r.budgets.sent)
    assert sent == Counter({(f"k{k}", c): 1 for k in range(6) for c in CHANNELS})
    assert {name: len(found) for name, found in budget_notices(receivers).items()} == dict.fromkeys(CHANNELS, 6)
    lost = sum(m.get_sample_value("meterline_budget_claims_lost_total") for m in (first_metrics, second_metrics))
    assert lost == units
    await asyncio.gather(first.run_once(now + timedelta(minutes=1)), second.run_once(now + timedelta(minutes=1)))
    assert {name: len(found) for name, found in budget_notices(receivers).items()} == dict.fromkeys(CHANNELS, 6)
    await first.close()
    await second.close()


class BarrierLog:
    """The real notification log; ``load`` returns only when every runner has loaded."""

    def __init__(self, log: NotificationLog, barrier: asyncio.Barrier) -> None:
        self._log, self._barrier = log, barrier

    async def load(self, since):
        units = await self._log.load(since)
        await self._barrier.wait()
        return units

    def __getattr__(self, name):
        return getattr(self._log, name)


async def test_a_channel_that_failed_is_released_and_sent_once_later(store, receivers):
    BudgetStore(store.client).put(make_budget("key", "k1", "day", "10", thresholds="50"), DAY)
    store.spend("k1", DAY + timedelta(hours=1), "6")
    receivers["slack"].failing = True
    runner, registry = new_runner(store, settings_for(receivers))
    report = await runner.run_once(DAY + timedelta(hours=20))
    assert report.budgets.failures == {"slack": 1} and receivers["slack"].attempts == 2
    assert len(receivers["pagerduty"].bodies) == 1  # the others were not held up
    receivers["slack"].failing = False
    other, _ = new_runner(store, settings_for(receivers))  # any runner may take the released claim
    report = await other.run_once(DAY + timedelta(hours=20, minutes=1))
    assert [(k.scope_id, c) for k, c in report.budgets.sent] == [("k1", "slack")] and report.budgets.claimed == 1
    await runner.run_once(DAY + timedelta(hours=20, minutes=2))
    assert {name: len(found) for name, found in budget_notices(receivers).items()} == dict.fromkeys(CHANNELS, 1)
    assert registry.get_sample_value("meterline_alert_delivery_failures_total", {"channel": "slack"}) == 1
    await runner.close()
    await other.close()


async def test_a_claim_left_by_a_dead_runner_is_taken_over_after_its_lease(store, receivers):
    BudgetStore(store.client).put(make_budget("key", "k1", "day", "10", thresholds="50"), DAY)
    store.spend("k1", DAY + timedelta(hours=1), "6")
    settings = settings_for(receivers, lease_s=60)
    dead, _ = new_runner(store, settings)
    now = DAY + timedelta(hours=20)
    status = dead.budgets._meter.status(BudgetStore(store.client).list()[0], now)
    key = NotificationKey.of(status, THRESHOLD, 50)
    assert await dead.budgets._log.claim((key, "slack"), 0, dead.budgets.owner, now, now + timedelta(seconds=60),
                                         status)  # ... and then it died
    runner, _ = new_runner(store, settings)
    report = await runner.run_once(now + timedelta(seconds=30))  # the claim is still live: not slack's turn
    assert sorted(c for _, c in report.budgets.sent) == ["alertmanager", "pagerduty", "webhook"]
    report = await runner.run_once(now + timedelta(seconds=61))
    assert [c for _, c in report.budgets.sent] == ["slack"]
    assert len(receivers["slack"].bodies) == 1
    await runner.close()
    await dead.close()


async def test_cli_run_once_reports_budget_notifications(store, receivers, monkeypatch, capsys):
    store.spend("k1", datetime.now(UTC) - timedelta(seconds=1), "6")  # the CLI runs at the current time
    BudgetStore(store.client).put(make_budget("key", "k1", "day", "10", thresholds="50"))
    monkeypatch.setenv("METERLINE_CLICKHOUSE_URL", store.url)
    monkeypatch.setenv("METERLINE_ALERTS_MIN_COST_USD", "1000000")
    monkeypatch.setenv("METERLINE_ALERTS_NEW_KEY_COST_USD", "1000000")
    monkeypatch.setenv("METERLINE_ALERTS_WEBHOOK_URL", receivers["webhook"].url)
    # The CLI blocks (its own event loop), so it runs in a thread while this loop serves the receiver.
    assert await asyncio.to_thread(cli.main, ["alerts", "run", "--once"]) == 0
    out = capsys.readouterr().out
    assert "budgets: 1 (" in out and "budget threshold key k1 day 50% sent to webhook" in out
