"""How alerts open, stay open and resolve, and which channel is owed which message (pure functions).

* A finding with no open alert for its key x model x metric **opens** one (one open alert per key x model x
  metric, whichever rule fired). Its severity is fixed at opening: Alertmanager identifies an alert by its
  labels, so a changing severity label would look like a second alert.
* While it keeps firing it is updated (value, peak, threshold, rule) and ``below_runs`` is 0.
* A run without a finding for it (back to normal, or the key went silent: no usage is below every floor)
  counts ``below_runs``; after ``resolve_after_runs`` consecutive such runs it **resolves** (hysteresis: one
  quiet run inside a noisy spike does not resolve and re-page).
* A resolved alert whose resolution some channel is still owed, and which fires again, **continues** (same
  start, channels already paged are not paged again); otherwise a new spike opens a new alert.

Delivery: Alertmanager gets every open alert on every run (it expects re-sends; ``endsAt`` lets it time out
alerts of a dead runner) and each resolution once. Other channels get the opening once, the resolution once
(only if they were told it fired), and, if ``renotify_interval_s`` > 0, a reminder that often while open.
A channel that failed is simply still owed the message at the next run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pipeline.alerts.model import FIRING, RESOLVED, AlertKey, Finding
from pipeline.alerts.state import AlertRecord


def advance(records: dict[AlertKey, AlertRecord], findings: dict[AlertKey, Finding], now: datetime,
            resolve_after_runs: int) -> dict[AlertKey, AlertRecord]:
    """The records this run changes: opened, updated, counted below threshold, or resolved.
    Versions are left as loaded: the runner sets each saved record's version once (loaded + 1)."""
    changed = {}
    for key, finding in findings.items():
        changed[key] = _fire(records.get(key), finding, now)
    for key, record in records.items():
        if record.firing and key not in findings:
            changed[key] = _below(record, now, resolve_after_runs)
    return changed


def _fire(record: AlertRecord | None, finding: Finding, now: datetime) -> AlertRecord:
    if record is None:
        return AlertRecord(
            key=finding.key, status=FIRING, severity=finding.severity, rule=finding.rule, reason=finding.reason,
            opened_at=now, resolved_at=None, updated_at=now, value=finding.value, threshold=finding.threshold,
            baseline=finding.baseline, peak=finding.value, below_runs=0)
    return replace(record, status=FIRING, resolved_at=None, updated_at=now, rule=finding.rule,
                   reason=finding.reason, value=finding.value, threshold=finding.threshold,
                   baseline=finding.baseline, peak=max(record.peak, finding.value), below_runs=0)


def _below(record: AlertRecord, now: datetime, resolve_after_runs: int) -> AlertRecord:
    below_runs = record.below_runs + 1
    if below_runs >= resolve_after_runs:
        return replace(record, status=RESOLVED, resolved_at=now, updated_at=now, below_runs=below_runs)
    return replace(record, updated_at=now, below_runs=below_runs)


def is_due(record: AlertRecord, channel: str, now: datetime, every_run: bool, renotify_s: float) -> bool:
    """Whether ``channel`` should get ``record``'s current phase in this run."""
    told = record.delivered.get(channel)
    if not record.firing:
        return told == FIRING  # a resolution only to channels told that it fired
    if every_run or told != FIRING:
        return True
    told_at = record.delivered_at.get(channel)
    return renotify_s > 0 and told_at is not None and (now - told_at).total_seconds() >= renotify_s


def mark_delivered(record: AlertRecord, channel: str, now: datetime) -> AlertRecord:
    return replace(record, delivered={**record.delivered, channel: record.status},
                   delivered_at={**record.delivered_at, channel: now})
