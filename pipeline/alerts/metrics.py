"""The alert runner's Prometheus metrics, declared once (same conventions as pipeline/metrics.py).

Labels stay low-cardinality: a channel, an alert status, a metric name. Never an API key or a model: those
belong in the alerts themselves, not in time series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.alerts.model import METRICS
from pipeline.budgets.status import STATES

BUDGET_KINDS = ("threshold", "forecast")

_RUN_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class AlertMetrics:
    """Registered on the registry it is given (the worker's, the CLI's own, or a test's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.alerts_sent = Counter(
            "meterline_alerts_sent_total",
            "Alert notifications accepted by a channel, by channel and alert status (firing or resolved); "
            "Alertmanager counts every re-send.", ["channel", "status"], registry=registry)
        self.delivery_failures = Counter(
            "meterline_alert_delivery_failures_total",
            "Alert deliveries (one request, after its retries) a channel did not accept; retried next run.",
            ["channel"], registry=registry)
        self.alerts_open = Gauge(
            "meterline_alerts_open", "Open usage-spike alerts after the last run, by metric.", ["metric"],
            registry=registry)
        self.run_seconds = Histogram(
            "meterline_alert_run_duration_seconds", "Time of one alert run: detection, state and delivery.",
            buckets=_RUN_SECONDS_BUCKETS, registry=registry)
        self.run_failures = Counter(
            "meterline_alert_run_failures_total",
            "Alert runs in which ClickHouse failed (spike detection or state, budget status or notification "
            "log); the next run retries.",
            registry=registry)
        for metric in METRICS:
            self.alerts_open.labels(metric=metric).set(0)
        self.budget_notifications_sent = Counter(
            "meterline_budget_notifications_sent_total",
            "Budget notifications accepted by a channel, by channel and kind (threshold or forecast).",
            ["channel", "kind"], registry=registry)
        self.budget_claims_lost = Counter(
            "meterline_budget_claims_lost_total",
            "Budget notifications this runner tried to claim but another runner claimed first (not sent here).",
            registry=registry)
        self.budgets = Gauge(
            "meterline_budgets", "Budgets after the last run, by state (within, projected_over, over).",
            ["state"], registry=registry)
        self.budget_evaluation_failures = Counter(
            "meterline_budget_evaluation_failures_total",
            "Budgets whose status could not be computed in a run (logged; the others go on).", registry=registry)
        for state in STATES:
            self.budgets.labels(state=state).set(0)
