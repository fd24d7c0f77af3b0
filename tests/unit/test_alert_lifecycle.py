"""Opening, keeping, resolving (with hysteresis) and who is owed which message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.alerts.lifecycle import advance, is_due, mark_delivered
from pipeline.alerts.model import FIRING, RESOLVED, AlertKey, Finding

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
KEY = AlertKey("key-1", "*", "tokens")


def finding(value: float = 5_000.0) -> Finding:
    return Finding(KEY, value, 3_000.0, 1_000.0, "baseline", "warning", "5.0x its normal")


def run(records, findings, minutes: int, resolve_after: int = 2):
    changed = advance(records, {f.key: f for f in findings}, T0 + timedelta(minutes=minutes), resolve_after)
    return {**records, **changed}, changed


def test_a_finding_opens_one_alert_and_later_findings_update_it():
    records, changed = run({}, [finding(5_000)], 0)
    opened = records[KEY]
    assert opened.status == FIRING and opened.opened_at == T0 and opened.peak == 5_000 and opened.delivered == {}
    records, changed = run(records, [finding(7_000)], 1)
    assert records[KEY].opened_at == T0 and records[KEY].value == 7_000 and records[KEY].peak == 7_000
    records, _ = run(records, [finding(6_000)], 2)
    assert records[KEY].peak == 7_000 and records[KEY].value == 6_000


def test_resolving_needs_consecutive_quiet_runs():
    records, _ = run({}, [finding()], 0)
    records, _ = run(records, [], 1)
    assert records[KEY].status == FIRING and records[KEY].below_runs == 1
    records, _ = run(records, [finding()], 2)  # one quiet run inside a noisy spike: still the same alert
    assert records[KEY].below_runs == 0 and records[KEY].opened_at == T0
    records, _ = run(records, [], 3)
    records, changed = run(records, [], 4)
    assert records[KEY].status == RESOLVED and records[KEY].resolved_at == T0 + timedelta(minutes=4)
    assert KEY in changed


def test_resolved_alerts_are_left_alone_and_a_new_spike_opens_a_new_alert():
    records, _ = run({}, [finding()], 0, resolve_after=1)
    records, _ = run(records, [], 1, resolve_after=1)
    _, changed = run(records, [], 2, resolve_after=1)
    assert changed == {}
    # not loaded any more once every channel was told: the next spike is a new alert
    records, _ = run({}, [finding()], 90, resolve_after=1)
    assert records[KEY].opened_at == T0 + timedelta(minutes=90)


def test_a_spike_returning_before_its_resolution_was_delivered_continues_the_same_alert():
    records, _ = run({}, [finding()], 0, resolve_after=1)
    records = {KEY: mark_delivered(records[KEY], "slack", T0)}
    records, _ = run(records, [], 1, resolve_after=1)  # resolved, slack still owed the resolution
    records, _ = run(records, [finding()], 2, resolve_after=1)
    assert records[KEY].status == FIRING and records[KEY].opened_at == T0
    assert not is_due(records[KEY], "slack", T0 + timedelta(minutes=2), every_run=False, renotify_s=0)


def test_channels_are_owed_the_opening_once_and_the_resolution_once():
    records, _ = run({}, [finding()], 0)
    record = records[KEY]
    assert is_due(record, "slack", T0, every_run=False, renotify_s=0)
    record = mark_delivered(record, "slack", T0)
    assert record.delivered == {"slack": FIRING} and record.delivered_at == {"slack": T0}
    assert not is_due(record, "slack", T0 + timedelta(hours=5), every_run=False, renotify_s=0)
    assert is_due(record, "alertmanager", T0, every_run=True, renotify_s=0)
    assert is_due(mark_delivered(record, "alertmanager", T0), "alertmanager", T0, every_run=True, renotify_s=0)
    records, _ = run({KEY: record}, [], 1, resolve_after=1)
    resolved = records[KEY]
    assert is_due(resolved, "slack", T0, every_run=False, renotify_s=0)
    assert not is_due(resolved, "pagerduty", T0, every_run=False, renotify_s=0)  # never told it fired
    assert not is_due(mark_delivered(resolved, "slack", T0), "slack", T0, every_run=False, renotify_s=0)


def test_renotify_reminds_open_alerts_at_the_configured_interval():
    records, _ = run({}, [finding()], 0)
    record = mark_delivered(records[KEY], "pagerduty", T0)
    assert not is_due(record, "pagerduty", T0 + timedelta(minutes=59), every_run=False, renotify_s=3600)
    assert is_due(record, "pagerduty", T0 + timedelta(minutes=60), every_run=False, renotify_s=3600)
