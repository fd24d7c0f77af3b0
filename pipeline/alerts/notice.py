"""One alert as people and channels see it: labels, texts and links, built from its state record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from pipeline.alerts.model import ALERT_NAME, ALL_MODELS, FIRING, AlertKey
from pipeline.alerts.state import AlertRecord
from pipeline.config import AlertSettings

UNITS = {"tokens": "tokens/h", "requests": "requests/h", "cost": "USD/h"}


@dataclass(frozen=True)
class LinkSettings:
    grafana_url: str
    dashboard_url_template: str  # placeholders: {grafana_url} {api_key_id} {model} {metric}
    runbook_url: str

    @classmethod
    def from_settings(cls, s: AlertSettings) -> "LinkSettings":
        return cls(s.grafana_url, s.dashboard_url_template, s.runbook_url)

    def dashboard_url(self, key: AlertKey) -> str:
        if not self.grafana_url and "{grafana_url}" in self.dashboard_url_template:
            return ""  # no Grafana configured: no link rather than a relative one
        return self.dashboard_url_template.format(
            grafana_url=self.grafana_url, api_key_id=quote(key.api_key_id, safe=""),
            model=quote(key.model, safe=""), metric=key.metric)


@dataclass(frozen=True)
class Notice:
    key: AlertKey
    status: str  # firing or resolved
    severity: str
    starts_at: datetime
    ends_at: datetime
    summary: str
    description: str
    dashboard_url: str
    runbook_url: str
    dedup_key: str  # stable for one alert from opening to resolution
    details: dict  # numbers for machine readers

    @property
    def firing(self) -> bool:
        return self.status == FIRING

    @property
    def labels(self) -> dict[str, str]:
        k = self.key
        return {"alertname": ALERT_NAME, "api_key_id": k.api_key_id, "model": k.model, "metric": k.metric,
                "severity": self.severity}

    @property
    def fields(self) -> list[tuple[str, str]]:
        """(name, value) pairs for chat messages; identifiers are code-formatted (escaped by the payload)."""
        k, d = self.key, self.details
        return [("Key", f"`{k.api_key_id}`"), ("Model", f"`{k.model}`"), ("Metric", k.metric),
                ("Severity", self.severity), ("Last hour", amount(k.metric, d["value"])),
                ("Threshold", amount(k.metric, d["threshold"]))]


def build_notice(record: AlertRecord, links: LinkSettings, now: datetime, firing_validity_s: float) -> Notice:
    """``firing_validity_s``: how far in the future a firing alert's ``endsAt`` lies; the runner re-sends well
    before that, so Alertmanager resolves an alert by itself only if the runner stops."""
    key = record.key
    ends_at = now + timedelta(seconds=firing_validity_s) if record.firing else (record.resolved_at or now)
    return Notice(
        key=key, status=record.status, severity=record.severity, starts_at=record.opened_at, ends_at=ends_at,
        summary=summary(record), description=description(record), dashboard_url=links.dashboard_url(key),
        runbook_url=links.runbook_url, dedup_key=dedup_key(record),
        details={"api_key_id": key.api_key_id, "model": key.model, "metric": key.metric, "unit": UNITS[key.metric],
                 "value": record.value, "peak": record.peak, "threshold": record.threshold,
                 "baseline": record.baseline, "rule": record.rule, "reason": record.reason},
    )


def dedup_key(record: AlertRecord) -> str:
    k = record.key
    return f"meterline/{k.api_key_id}/{k.model}/{k.metric}/{int(record.opened_at.timestamp())}"


def scope(key: AlertKey) -> str:
    return f"key {key.api_key_id}" + ("" if key.model == ALL_MODELS else f" on {key.model}")


def summary(record: AlertRecord) -> str:
    k = record.key
    if record.firing:
        return f"Usage spike: {scope(k)}, {k.metric} {amount(k.metric, record.value)} in the last hour"
    return f"Resolved: {scope(k)}, {k.metric} back to normal (peak {amount(k.metric, record.peak)})"


def description(record: AlertRecord) -> str:
    k = record.key
    text = (f"{scope(k)}: {k.metric} {amount(k.metric, record.value)} in the last 60 minutes, "
            f"threshold {amount(k.metric, record.threshold)}, normal {amount(k.metric, record.baseline)}; "
            f"{record.reason}. Peak {amount(k.metric, record.peak)}.")
    if not record.firing:
        text += f" Below the threshold for {record.below_runs} consecutive checks."
    return text


def amount(metric: str, value: float) -> str:
    if metric == "cost":
        return f"${value:,.2f}/h" if value >= 1 else f"${value:,.4f}/h"
    return f"{value:,.0f} {metric}/h"


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager and PagerDuty expect."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
