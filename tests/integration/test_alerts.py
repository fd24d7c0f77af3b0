"""Spike alerts end to end on real embedded ClickHouse filled through the real writer, delivered over HTTP to
real local receivers (one per channel format) and to a real Alertmanager built from its Go module."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from statistics import median

import pytest
from prometheus_client import CollectorRegistry

from pipeline import cli
from pipeline.alerts.baseline import Window
from pipeline.alerts.channels import RetryPolicy, channels_from_settings
from pipeline.alerts.detect import DetectionParams, Detector
from pipeline.alerts.metrics import AlertMetrics
from pipeline.alerts.model import AlertKey
from pipeline.alerts.rules import RuleSet
from pipeline.alerts.runner import AlertRunner
from pipeline.alerts.state import AlertStateStore
from pipeline.clickhouse import ClickHouse, EmbeddedStoreBusy, connect
from pipeline.config import AlertSettings
from support.alertmanager import AlertmanagerBuildError, AlertmanagerProcess, Receiver, build_alertmanager, \
    hour_events
from support.writes import write_events

pytestmark = pytest.mark.clickhouse

NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)  # half of the current hour has elapsed
HOUR = timedelta(hours=1)
RULES = '[[static]]\nmetric = "requests"\nmax_per_hour = 3\napi_key_id = "key-capped"\n'
# key-spike's gpt-4o spike is paged once, on the key (its gpt-4o series is covered); key-masked's gpt-4o spike
# is hidden in its total by a large steady model, so it pages on key x model.
EXPECTED = {
    AlertKey("key-spike", "*", "tokens"), AlertKey("key-spike", "*", "cost"),
    AlertKey("key-masked", "gpt-4o", "tokens"), AlertKey("key-masked", "gpt-4o", "requests"),
    AlertKey("key-masked", "gpt-4o", "cost"),
    AlertKey("key-new", "*", "tokens"), AlertKey("key-capped", "*", "requests"),
}
NON_AM = ("webhook", "slack", "pagerduty")


class Store:
    """The test database: written through the worker's writer (one partition per flush), read by runners."""

    def __init__(self, client, url: str) -> None:
        self.client, self.url, self._partition = client, url, 0
        self._readers: list[ClickHouse] = []

    def write(self, events: list[dict], now: datetime) -> None:
        self._partition += 1
        assert write_events(self.client, events, int(now.timestamp() * 1000), partition=self._partition)[0]

    def reader(self) -> ClickHouse:
        reader = ClickHouse(connect(self.url))
        self._readers.append(reader)
        return reader

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


@pytest.fixture
async def receivers():
    """One real local HTTP receiver per channel format."""
    started = {name: await Receiver().start() for name in ("alertmanager", "webhook", "slack", "pagerduty")}
    yield started
    for receiver in started.values():
        await receiver.stop()


@pytest.fixture
def store(clickhouse, clickhouse_url):
    s = Store(clickhouse, clickhouse_url)
    yield s
    s.close()


def settings_for(receivers: dict[str, Receiver], rules_file) -> AlertSettings:
    return AlertSettings(
        history_hours=48, min_history_hours=24, factor=3.0, mad_k=5.0, min_tokens=1000, min_requests=10,
        min_cost_usd=0.01, new_key_tokens=100_000, new_key_requests=1000, new_key_cost_usd=100,
        rules_file=rules_file, resolve_after_runs=2, alertmanager_url=receivers["alertmanager"].url,
        webhook_url=receivers["webhook"].url, slack_webhook_url=receivers["slack"].url,
        pagerduty_routing_key="routing-key-1", pagerduty_url=receivers["pagerduty"].url,
        grafana_url="https://grafana.test", runbook_url="https://runbooks.test/usage-spike")


def new_runner(store: Store, settings: AlertSettings) -> tuple[AlertRunner, CollectorRegistry]:
    """Fresh runner objects over the same database: what a restarted process builds."""
    registry = CollectorRegistry()
    runner = AlertRunner(store.reader(), settings, RuleSet.load(settings.rules_file), channels_from_settings(settings),
                         AlertMetrics(registry), retry=RetryPolicy(attempts=2, timeout_s=5, backoff_initial_s=0.05))
    return runner, registry


def seed_history(store: Store, now: datetime, hours: int = 50) -> None:
    """Hourly traffic up to the current (partial) hour; see EXPECTED for what must alert."""
    current = now.replace(minute=0, second=0, microsecond=0)
    events: list[dict] = []
    for h in range(hours, 0, -1):
        start = current - h * HOUR
        daily_peak = start.hour in ((current - HOUR).hour, current.hour)
        events += hour_events("key-steady", "gpt-4o", start, 4, 1000, 200)
        events += hour_events("key-spike", "gpt-4o", start, 4, 1000, 200)
        events += hour_events("key-spike", "claude-sonnet-4-5", start, 4, 1000, 200)
        events += hour_events("key-daily", "gpt-4o", start, 40 if daily_peak else 4, 1000, 200)
        events += hour_events("key-tiny", "gpt-4o", start, 1, 5, 5)
        events += hour_events("key-capped", "gpt-4o", start, 4, 100, 20)
        events += hour_events("key-masked", "claude-sonnet-4-5", start, 20, 5000, 0)
        events += hour_events("key-masked", "gpt-4o", start, 2, 1000, 0)
        if h <= 2:
            events += hour_events("key-new", "gpt-4o", start, 2, 100_000, 0)
    partial = dict(until=now)
    events += hour_events("key-steady", "gpt-4o", current, 2, 1000, 200, **partial)
    events += hour_events("key-spike", "gpt-4o", current, 2, 48_000, 0, **partial)  # the spike
    events += hour_events("key-spike", "claude-sonnet-4-5", current, 2, 1000, 200, **partial)
    events += hour_events("key-daily", "gpt-4o", current, 20, 1000, 200, **partial)  # as every day at this hour
    events += hour_events("key-tiny", "gpt-4o", current, 1, 500, 100, **partial)  # 60x, but below the floor
    events += hour_events("key-capped", "gpt-4o", current, 2, 100, 20, **partial)
    events += hour_events("key-new", "gpt-4o", current, 2, 100_000, 0, **partial)
    events += hour_events("key-masked", "claude-sonnet-4-5", current, 10, 5000, 0, **partial)
    events += hour_events("key-masked", "gpt-4o", current, 20, 1000, 0, **partial)  # 10x, 1.2x of the total
    store.write(events, now)


def seed_back_to_normal(store: Store, now: datetime) -> None:
    """Two more hours of ordinary traffic for the keys that stay; key-new and key-capped fall silent."""
    current = now.replace(minute=0, second=0, microsecond=0)
    events = []
    for start, until in ((current - 2 * HOUR, None), (current - HOUR, None), (current, now)):
        count = 4 if until is None else 2
        for key, model in (("key-steady", "gpt-4o"), ("key-spike", "gpt-4o"), ("key-spike", "claude-sonnet-4-5")):
            events += hour_events(key, model, start, count, 1000, 200, until=until)
    store.write(events, now)


def sent(registry: CollectorRegistry, channel: str, status: str) -> float:
    return registry.get_sample_value("meterline_alerts_sent_total", {"channel": channel, "status": status}) or 0


async def test_expected_spikes_page_once_survive_a_restart_and_resolve(store, receivers, tmp_path):
    (tmp_path / "rules.toml").write_text(RULES)
    settings = settings_for(receivers, tmp_path / "rules.toml")
    seed_history(store, NOW)
    runner, registry = new_runner(store, settings)

    report = await runner.run_once(NOW)
    assert set(report.opened) == EXPECTED and report.open_alerts == len(EXPECTED) and not report.failures
    assert {tuple(a["labels"][k] for k in ("api_key_id", "model", "metric"))
            for a in receivers["alertmanager"].bodies[0]} == {(k.api_key_id, k.model, k.metric) for k in EXPECTED}
    assert len(receivers["slack"].bodies) == len(receivers["pagerduty"].bodies) == len(EXPECTED)
    assert [len(b["alerts"]) for b in receivers["webhook"].bodies] == [len(EXPECTED)]
    records = {r.key: r for r in await AlertStateStore(store.reader()).list_open()}
    assert (records[AlertKey("key-new", "*", "tokens")].rule, records[AlertKey("key-capped", "*", "requests")].rule,
            records[AlertKey("key-spike", "*", "cost")].rule) == ("new_key", "static", "baseline")
    assert records[AlertKey("key-capped", "*", "requests")].severity == "critical"
    assert "; driven by gpt-4o" in records[AlertKey("key-spike", "*", "tokens")].reason
    assert registry.get_sample_value("meterline_alerts_open", {"metric": "tokens"}) == 3

    await runner.run_once(NOW + timedelta(minutes=1))  # still spiking: Alertmanager again, nobody else
    await runner.close()
    restarted, registry = new_runner(store, settings)
    await restarted.run_once(NOW + timedelta(minutes=2))
    assert [len(receivers[c].bodies) for c in NON_AM] == [1, len(EXPECTED), len(EXPECTED)]
    assert [len(b) for b in receivers["alertmanager"].bodies] == [len(EXPECTED)] * 3
    assert {a["startsAt"] for a in receivers["alertmanager"].bodies[2]} == {"2026-11-25T12:30:00.000Z"}
    assert sent(registry, "slack", "firing") == 0 and sent(registry, "alertmanager", "firing") == len(EXPECTED)

    later = NOW + 2 * HOUR
    seed_back_to_normal(store, later)
    report = await restarted.run_once(later)  # first quiet run: hysteresis, no resolution yet
    assert report.resolved == [] and report.open_alerts == len(EXPECTED)
    report = await restarted.run_once(later + timedelta(minutes=1))
    assert set(report.resolved) == EXPECTED and report.open_alerts == 0
    assert [b["event_action"] for b in receivers["pagerduty"].bodies[len(EXPECTED):]] == ["resolve"] * len(EXPECTED)
    assert {b["text"].split()[0] for b in receivers["slack"].bodies[len(EXPECTED):]} == {"[RESOLVED]"}
    assert {a["status"] for a in receivers["webhook"].bodies[1]["alerts"]} == {"resolved"}
    assert {a["endsAt"] for a in receivers["alertmanager"].bodies[-1]} == {"2026-11-25T14:31:00.000Z"}
    am_posts = len(receivers["alertmanager"].bodies)
    await restarted.run_once(later + timedelta(minutes=2))  # all told: nothing more to anyone
    assert len(receivers["alertmanager"].bodies) == am_posts and len(receivers["slack"].bodies) == 2 * len(EXPECTED)
    assert await AlertStateStore(store.reader()).list_open() == []
    await restarted.close()


async def test_receivers_get_the_exact_payload_shapes(store, receivers, tmp_path):
    (tmp_path / "rules.toml").write_text(RULES)
    seed_history(store, NOW)
    runner, _ = new_runner(store, settings_for(receivers, tmp_path / "rules.toml"))
    await runner.run_once(NOW)
    await runner.close()
    capped = {"alertname": "MeterlineUsageSpike", "api_key_id": "key-capped", "model": "*", "metric": "requests",
              "severity": "critical"}
    [alert] = [a for a in receivers["alertmanager"].bodies[0] if a["labels"] == capped]
    dashboard = "https://grafana.test/d/meterline-key-usage?var-key=key-capped"
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert alert["annotations"] == {
        "summary": "Usage spike: key key-capped, requests 4 requests/h in the last hour",
        "description": "key key-capped: requests 4 requests/h in the last 60 minutes, threshold 3 requests/h, "
                       "normal 4 requests/h; static rule: requests above 3/h for key key-capped in total. "
                       "Peak 4 requests/h.",
        "runbook_url": "https://runbooks.test/usage-spike", "dashboard_url": dashboard}
    assert (alert["startsAt"], alert["endsAt"], alert["generatorURL"]) == (
        "2026-11-25T12:30:00.000Z", "2026-11-25T12:35:00.000Z", dashboard)
    [event] = [e for e in receivers["pagerduty"].bodies if e["dedup_key"].startswith("meterline/key-capped/")]
    assert set(event) == {"routing_key", "event_action", "dedup_key", "payload", "links"}
    assert (event["routing_key"], event["event_action"]) == ("routing-key-1", "trigger")
    assert set(event["payload"]) == {"summary", "source", "severity", "timestamp", "custom_details"}
    assert event["payload"]["severity"] == "critical" and event["payload"]["custom_details"]["value"] == 4
    assert event["links"][0] == {"href": dashboard, "text": "Dashboard"}
    [message] = [m for m in receivers["slack"].bodies if "key-capped" in m["text"]]
    assert set(message) == {"text", "blocks"}
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "section", "context"]
    [hook] = receivers["webhook"].bodies
    assert set(hook) == {"version", "source", "alerts"}
    assert set(hook["alerts"][0]) == {"status", "labels", "annotations", "startsAt", "endsAt", "dedupKey", "details"}


async def test_a_receiver_that_fails_at_first_gets_the_alert_on_the_next_run(store, receivers, tmp_path):
    (tmp_path / "rules.toml").write_text(RULES)
    seed_history(store, NOW)
    receivers["slack"].failing = True  # HTTP 500 for every attempt of the first run
    runner, registry = new_runner(store, settings_for(receivers, tmp_path / "rules.toml"))
    report = await runner.run_once(NOW)
    assert receivers["slack"].bodies == [] and report.failures["slack"] == len(EXPECTED)
    assert receivers["slack"].attempts == 2 * len(EXPECTED)  # each retried once, then left for the next run
    assert len(receivers["pagerduty"].bodies) == len(EXPECTED)  # the other channels were not held up
    assert registry.get_sample_value("meterline_alert_delivery_failures_total", {"channel": "slack"}) == len(EXPECTED)
    receivers["slack"].failing = False
    await runner.run_once(NOW + timedelta(minutes=1))
    await runner.run_once(NOW + timedelta(minutes=2))
    assert len(receivers["slack"].bodies) == len(EXPECTED) and len(receivers["pagerduty"].bodies) == len(EXPECTED)
    assert sent(registry, "slack", "firing") == len(EXPECTED)
    assert registry.get_sample_value("meterline_alert_run_duration_seconds_count") == 3
    await runner.close()


async def test_baselines_for_all_keys_equal_a_python_reference(store):
    """A small version of the 10k-key benchmark, checked number by number (timing is not asserted)."""
    now = NOW + timedelta(minutes=10)
    events = []
    for k in range(40):
        for h in range(50, -1, -1):
            start = now.replace(minute=0) - h * HOUR
            if (k % 5 == 0 and h % 7 == 3) or (k % 4 == 1 and h > 20):
                continue  # gaps (zero hours) and keys first seen inside the window
            for model in ("gpt-4o", "claude-sonnet-4-5")[: 1 + k % 2]:
                count = 1 + (k * 7 + h * 3) % 5
                events += hour_events(f"k{k:02}", model, start, count, 100 + 37 * ((k + h) % 11), 10 * (h % 3),
                                      until=now if h == 0 else None)
    store.write(events, now)
    params = DetectionParams.from_settings(AlertSettings(history_hours=48, min_tokens=0, min_requests=0,
                                                         min_cost_usd=0, new_key_tokens=0))
    found = await Detector(store.reader(), params, RuleSet()).series(now)
    expected = reference_stats(store.client, Window(now, 48))
    assert {(s.api_key_id, s.model) for s in found} == set(expected)
    for s in found:
        want = expected[(s.api_key_id, s.model)]
        assert s.history_hours == want["history_hours"]
        for metric, stats in s.metrics.items():
            assert vars(stats) == pytest.approx(want[metric], rel=1e-9, abs=1e-12), (s.api_key_id, s.model, metric)


def reference_stats(client, window: Window) -> dict:
    """The same numbers as baseline.py, from stored hourly sums with plain Python statistics."""
    rows = client.query(
        "SELECT api_key_id, model, toUInt32(hour), sum(input_tokens + output_tokens), sum(requests), "
        "toFloat64(sum(total_cost)) FROM usage_hourly GROUP BY api_key_id, model, hour").result_rows
    hourly: dict = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0.0]))
    for key, model, hour, tokens, requests, cost in rows:
        slot = (hour - window.start) // 3600
        if not 0 <= slot < window.slots:
            continue
        for scope in (model, "*"):
            for i, value in enumerate((tokens, requests, cost)):
                hourly[(key, scope)][slot][i] += value
    n, f, out = window.slots, window.elapsed_fraction, {}
    for series, slots in hourly.items():
        first = min(slots)
        entry = {"history_hours": n - 2 - first}
        for i, metric in enumerate(("tokens", "requests", "cost")):
            v = [slots[s][i] if s in slots else 0.0 for s in range(n)]
            recent = v[first:n - 2]
            same = [(1 - f) * v[n - 2 - 24 * d] + f * v[n - 1 - 24 * d] for d in range(1, window.days + 1)
                    if n - 2 - 24 * d >= first]
            entry[metric] = {"value": (1 - f) * v[n - 2] + v[n - 1], **robust("recent", recent),
                             **robust("same_hour", same)}
        out[series] = entry
    return out


def robust(name: str, values: list[float]) -> dict:
    if not values:
        return {f"{name}_median": 0.0, f"{name}_mad": 0.0}
    center = median(values)
    return {f"{name}_median": center, f"{name}_mad": median(abs(x - center) for x in values)}


def test_cli_runs_once_lists_and_explains_a_held_store(store, monkeypatch, capsys, tmp_path):
    seed_history(store, datetime.now(UTC))
    monkeypatch.setenv("METERLINE_CLICKHOUSE_URL", store.url)
    monkeypatch.setenv("METERLINE_ALERTS_HISTORY_HOURS", "48")
    monkeypatch.setenv("METERLINE_ALERTS_NEW_KEY_TOKENS", "100000")
    assert cli.main(["alerts", "run", "--once"]) == 0
    out, err = capsys.readouterr()
    assert "open alerts" in out and "opened   key-new model=* metric=tokens" in out
    assert "no alert channel is configured" in err
    assert cli.main(["alerts", "list"]) == 0
    assert "key-new" in capsys.readouterr().out

    def held(url, create_database=False):
        raise EmbeddedStoreBusy("the embedded ClickHouse folder is open in another process")
    monkeypatch.setattr("pipeline.commands.local.connect", held)
    assert cli.main(["alerts", "list"]) == 1
    err = capsys.readouterr().err
    assert "embedded ClickHouse store is in use" in err and "logs each alert as it opens" in err
    assert "Traceback" not in err


@pytest.fixture(scope="session")
def alertmanager_binary():
    try:
        return build_alertmanager()
    except AlertmanagerBuildError as error:
        pytest.skip(f"the Alertmanager binary could not be built from its Go module: {error}")


@pytest.mark.slow
async def test_a_real_alertmanager_holds_the_alert_and_then_resolves_it(store, alertmanager_binary, tmp_path):
    hook = await Receiver().start()
    seed_history(store, datetime.now(UTC))  # Alertmanager judges startsAt/endsAt by its own clock: real time
    labels = {"alertname": "MeterlineUsageSpike", "api_key_id": "key-new", "model": "*", "metric": "tokens",
              "severity": "warning"}
    try:
        with AlertmanagerProcess(alertmanager_binary, tmp_path / "am", hook.url) as am:
            runner, registry = new_runner(store, AlertSettings(history_hours=48, new_key_tokens=100_000,
                                                               alertmanager_url=am.url))
            try:
                await runner.run_once()
                held = [a for a in am.alerts() if a["labels"] == labels]
                assert len(held) == 1 and held[0]["status"]["state"] == "active", am.alerts()
                assert held[0]["annotations"]["summary"].startswith("Usage spike: key key-new, tokens")
                assert held[0]["annotations"]["description"].startswith("key key-new: tokens")
                await wait_for(lambda: _notified(hook, "firing", labels), am)
                # usage back to normal (here: the key's rows are gone), seen by two consecutive runs
                store.client.command("ALTER TABLE rollups DELETE WHERE api_key_id = 'key-new' "
                                     "SETTINGS mutations_sync = 1")
                await runner.run_once()
                assert [a["status"]["state"] for a in am.alerts() if a["labels"] == labels] == ["active"]
                await runner.run_once()  # resolved: endsAt = now
                await wait_for(lambda: not [a for a in am.alerts() if a["labels"] == labels], am)
                await wait_for(lambda: _notified(hook, "resolved", labels), am)
                assert sent(registry, "alertmanager", "resolved") == 1
            finally:
                await runner.close()
    finally:
        await hook.stop()


def _notified(hook: Receiver, status: str, labels: dict) -> bool:
    """Whether Alertmanager's webhook notification for ``labels`` in ``status`` arrived."""
    return any(body.get("status") == status and any(a["labels"] == labels for a in body.get("alerts", []))
               for body in hook.bodies)


async def wait_for(condition, am: AlertmanagerProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"Alertmanager did not notify in time:\n{am.log_tail()}"
        await asyncio.sleep(0.2)
