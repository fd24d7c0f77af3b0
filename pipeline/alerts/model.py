"""Types shared by the alert modules: what an alert is about, and what detection found."""

from __future__ import annotations

from dataclasses import dataclass

ALERT_NAME = "MeterlineUsageSpike"
METRICS = ("tokens", "requests", "cost")
ALL_MODELS = "*"  # the model label of an alert on a key's total over all its models
SEVERITIES = ("critical", "error", "warning", "info")  # PagerDuty's set; Alertmanager takes any string

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True, order=True)
class AlertKey:
    """The identity of an alert: at most one is open per key x model x metric."""

    api_key_id: str
    model: str  # a model name, or ALL_MODELS
    metric: str  # one of METRICS


@dataclass(frozen=True)
class Finding:
    """A series above its threshold in this run."""

    key: AlertKey
    value: float  # usage in the last 60 minutes (see baseline.py), per hour
    threshold: float
    baseline: float  # the normal it was compared with (0 for static rules on new keys)
    rule: str  # "baseline", "new_key" or "static"
    severity: str
    reason: str  # one sentence for people: why this is a spike
