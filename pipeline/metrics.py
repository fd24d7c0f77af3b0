"""Every Prometheus metric meterline exports, declared once with its unit and meaning.

Names carry the ``meterline_`` prefix, base units and ``_total`` on counters. Labels stay low-cardinality:
a Kafka partition, a rejection reason, a delivery channel; never an API key or a model.

Counters and histograms export no ``*_created`` series (:func:`disable_created_series`, called once per
process by ``pipeline.cli.main``). In the text exposition Prometheus scrapes, each is a gauge series of its
own: one more series per counter, histogram and label set, holding a start time that no rule or dashboard
of ours reads.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the web handlers)


def disable_created_series() -> None:
    """Stop exporting ``<counter>_created`` and ``<histogram>_created`` samples in this process, for every
    registry (a process-wide switch of prometheus_client, read at scrape time)."""
    disable_created_metrics()


_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PipelineMetrics:
    """The worker's metrics, registered on the registry it is given (tests pass their own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages_consumed = Counter(
            "meterline_messages_consumed_total", "Kafka messages read from the usage topic.", registry=registry)
        self.events_consumed = Counter(
            "meterline_events_consumed_total",
            "Events read from the usage topic (a batch message holds several); each ends up counted, "
            "duplicate or rejected.", registry=registry)
        self.events_counted = Counter(
            "meterline_events_counted_total", "Events added to usage_hourly.", registry=registry)
        self.events_duplicate = Counter(
            "meterline_events_duplicate_total", "Events dropped because their request_id was already counted.",
            registry=registry)
        self.events_rejected = Counter(
            "meterline_events_rejected_total", "Events dead-lettered, by reason.", ["reason"], registry=registry)
        self.events_late = Counter(
            "meterline_events_late_total",
            "Counted events whose hour had already ended when they arrived (added to their own hour).",
            registry=registry)
        self.events_unpriced = Counter(
            "meterline_events_unpriced_total", "Counted events of a model with no known price (cost 0).",
            registry=registry)
        self.rollup_rows_written = Counter(
            "meterline_rollup_rows_written_total", "Usage rows inserted into ClickHouse.", registry=registry)
        self.flushes = Counter(
            "meterline_flushes_total", "Partition flushes committed to ClickHouse.", registry=registry)
        self.flushes_fenced = Counter(
            "meterline_flushes_fenced_total",
            "Flushes refused because another worker had advanced the partition.", registry=registry)
        self.clickhouse_errors = Counter(
            "meterline_clickhouse_errors_total", "Failed ClickHouse calls (each is retried).", registry=registry)
        self.dead_letter_errors = Counter(
            "meterline_dead_letter_errors_total", "Failed sends to the dead-letter topic (each is retried).",
            registry=registry)
        self.clickhouse_write_seconds = Histogram(
            "meterline_clickhouse_write_duration_seconds", "Time to write one flush to ClickHouse.",
            buckets=_SECONDS_BUCKETS, registry=registry)
        self.flush_seconds = Histogram(
            "meterline_flush_duration_seconds", "Time from the start of a flush to its commit.",
            buckets=_SECONDS_BUCKETS, registry=registry)
        self.consumer_lag = Gauge(
            "meterline_consumer_lag_messages",
            "Messages in the usage topic after the last offset committed to ClickHouse, by partition.",
            ["partition"], registry=registry)
        self.offset_gaps = Counter(
            "meterline_offset_gaps_total",
            "Times a partition could not resume at its committed offset (deleted by retention).",
            registry=registry)
        self.dedup_entries = Gauge(
            "meterline_dedup_filter_entries", "Request ids held by the in-memory dedup filter.", registry=registry)
        self.dedup_bytes = Gauge(
            "meterline_dedup_filter_bytes", "Memory held by the in-memory dedup filter.", registry=registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
