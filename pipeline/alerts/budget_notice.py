"""A budget notification as people and channels see it: its identity, labels, texts and numbers.

It has the same shape as a spike alert's Notice (status, severity, labels, summary, description, dedup_key,
details, fields, starts_at, ends_at), so the same channels and payload builders carry it. A budget
notification is an event, not a condition that resolves: Alertmanager holds it until the period's end
(``endsAt``), PagerDuty and the webhook deduplicate it by ``dedup_key``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from pipeline.alerts.model import AlertKey, ALL_MODELS, FIRING
from pipeline.alerts.notice import LinkSettings
from pipeline.budgets.model import PERIOD_WORDS
from pipeline.budgets.status import BudgetStatus
from pipeline.usage.export import decimal_text

BUDGET_ALERT_NAME = "MeterlineBudget"
THRESHOLD, FORECAST = "threshold", "forecast"


@dataclass(frozen=True, order=True)
class NotificationKey:
    """One notification: per budget, period, kind, threshold and amount. The amount is part of it, so a
    budget whose amount changes mid-period is notified again against the new amount (docs/alerts.md)."""

    scope: str
    scope_id: str
    period: str
    period_start: datetime  # UTC instant of the period's local start
    kind: str  # THRESHOLD or FORECAST
    threshold: int  # percent; 0 for FORECAST
    amount_usd: Decimal

    @classmethod
    def of(cls, status: BudgetStatus, kind: str, threshold: int = 0) -> "NotificationKey":
        b = status.budget
        return cls(b.scope, b.scope_id, b.period, utc(status.period_start), kind, threshold,
                   b.amount_usd)

    def same_budget_period(self, other: "NotificationKey") -> bool:
        return (self.scope, self.scope_id, self.period, self.period_start, self.amount_usd) == (
            other.scope, other.scope_id, other.period, other.period_start, other.amount_usd)

    def token(self, channel: str, attempt: int, event: str) -> str:
        """An insert deduplication token for one row of the notification log (unambiguous: a hash of the
        fields as a JSON array, so no id can be spelled to collide with another)."""
        parts = [self.scope, self.scope_id, self.period, int(self.period_start.timestamp()), self.kind,
                 self.threshold, decimal_text(self.amount_usd), channel, attempt, event]
        return "budget:" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    @property
    def dedup_key(self) -> str:
        """Stable across runners and restarts: PagerDuty's dedup_key, the webhook's dedupKey."""
        start = self.period_start.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"meterline/budget/{self.scope}/{self.scope_id}/{self.period}/{start}/{self.kind}/{self.threshold}"
                f"/{decimal_text(self.amount_usd)}")


@dataclass(frozen=True)
class BudgetNotice:
    key: NotificationKey
    severity: str
    starts_at: datetime
    ends_at: datetime  # the period's end
    summary: str
    description: str
    dashboard_url: str
    runbook_url: str
    labels: dict[str, str]
    details: dict  # JSON values; money as exact decimal strings
    fields: list[tuple[str, str]] = field(default_factory=list)
    status: str = FIRING

    @property
    def firing(self) -> bool:
        return True

    @property
    def dedup_key(self) -> str:
        return self.key.dedup_key


def build_budget_notice(key: NotificationKey, status: BudgetStatus, links: LinkSettings,
                        starts_at: datetime) -> BudgetNotice:
    """The notice for ``key`` from the budget's current ``status``; ``starts_at``: when it was first claimed."""
    b = status.budget
    severity = "critical" if key.kind == THRESHOLD and key.threshold >= 100 else "warning"
    start_day = status.period_start.date().isoformat()
    labels = {"alertname": BUDGET_ALERT_NAME, "scope": b.scope, "scope_id": b.scope_id, "period": b.period,
              "period_start": start_day, "kind": key.kind, "threshold": str(key.threshold),
              "budget_usd": decimal_text(b.amount_usd), "severity": severity}
    if b.scope == "key":
        labels["api_key_id"] = b.scope_id  # routes like the spike alerts (group_by api_key_id)
    dashboard = links.dashboard_url(AlertKey(b.scope_id, ALL_MODELS, "cost")) if b.scope == "key" else ""
    exceeds = status.projected_exceed_at
    return BudgetNotice(
        key=key, severity=severity, starts_at=starts_at, ends_at=status.period_end, summary=summary(key, status),
        description=description(status), dashboard_url=dashboard, runbook_url=links.runbook_url, labels=labels,
        details=details(key, status),
        fields=[("Scope", f"{b.scope} `{b.scope_id}`"), ("Budget", f"{usd(b.amount_usd)} {PERIOD_WORDS[b.period]}"),
                ("Spent", f"{usd(status.spent_usd)} ({percent(status.used_share)})"),
                ("Projected", usd(status.projected_usd)),
                ("Exceeds on", exceeds.date().isoformat() if exceeds else "-"), ("Severity", severity)])


def summary(key: NotificationKey, status: BudgetStatus) -> str:
    b = status.budget
    who, budget = scope_text(b.scope, b.scope_id), f"{PERIOD_WORDS[b.period]} budget of {usd(b.amount_usd)}"
    if key.kind == FORECAST:
        when = status.projected_exceed_at.date().isoformat() if status.projected_exceed_at else "?"
        return f"Budget forecast: {who} is projected to exceed its {budget} on {when}"
    return f"Budget: {who} at {percent(status.used_share)} of its {budget} ({key.threshold}% threshold)"


def description(status: BudgetStatus) -> str:
    b = status.budget
    last_day = status.period_end.date() - timedelta(days=1)
    text = (f"{scope_text(b.scope, b.scope_id)} has spent {usd(status.spent_usd)} of {usd(b.amount_usd)} "
            f"({percent(status.used_share)}) this {b.period}, {status.period_start.date().isoformat()} to "
            f"{last_day.isoformat()} ({b.tz}). At {usd(status.daily_rate_usd)}/day "
            f"(trend since {status.trend_since.date().isoformat()}) it projects {usd(status.projected_usd)} by the "
            f"{b.period}'s end")
    if status.projected_exceed_at is not None:
        text += f", exceeding the budget on {status.projected_exceed_at.isoformat()}"
    return text + "."


def details(key: NotificationKey, status: BudgetStatus) -> dict:
    b = status.budget
    exceeds = status.projected_exceed_at
    return {"scope": b.scope, "scope_id": b.scope_id, "period": b.period, "tz": b.tz, "kind": key.kind,
            "threshold": key.threshold, "amount_usd": decimal_text(b.amount_usd),
            "period_start": status.period_start.isoformat(), "period_end": status.period_end.isoformat(),
            "spent_usd": decimal_text(status.spent_usd), "used_share": decimal_text(status.used_share),
            "projected_usd": decimal_text(status.projected_usd),
            "projected_share": decimal_text(status.projected_share),
            "daily_rate_usd": decimal_text(status.daily_rate_usd),
            "projected_exceed_at": exceeds.isoformat() if exceeds else None,
            "thresholds_crossed": list(status.thresholds_crossed), "as_of": status.as_of.isoformat()}


def scope_text(scope: str, scope_id: str) -> str:
    return f"{scope} {scope_id}"


def usd(value: Decimal) -> str:
    """$1,234.57 (half-even to cents) from a dollar up; below, up to 6 decimals ($0.0012)."""
    if abs(value) >= 1:
        return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"
    return "$" + decimal_text(value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def percent(share: Decimal) -> str:
    return f"{(share * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}%"


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
