"""The collector's Prometheus metrics, declared once (same rules as pipeline/metrics.py: ``meterline_``
prefix, base units, ``_total`` counters, low-cardinality labels, never an API key or a model)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_EVENTS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000)


class IngestMetrics:
    """Registered on the registry it is given (tests pass their own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "meterline_ingest_requests_total", "HTTP requests answered, by route and status class (2xx, 4xx, 5xx).",
            ["route", "code"], registry=registry)
        self.events_accepted = Counter(
            "meterline_ingest_events_accepted_total", "Events acknowledged by Kafka and answered 2xx, by route.",
            ["route"], registry=registry)
        self.events_rejected = Counter(
            "meterline_ingest_events_rejected_total", "Events refused as invalid, by route and reason.",
            ["route", "reason"], registry=registry)
        self.records_skipped = Counter(
            "meterline_ingest_records_skipped_total",
            "Records that carry no LLM usage (e.g. non-GenAI spans): neither counted nor rejected.",
            ["route"], registry=registry)
        self.produce_errors = Counter(
            "meterline_ingest_produce_errors_total",
            "Requests answered 503 because Kafka failed or did not acknowledge in time.", registry=registry)
        self.produce_seconds = Histogram(
            "meterline_ingest_produce_duration_seconds",
            "Time from a request's events being queued to Kafka's acknowledgement of all of them.",
            buckets=_SECONDS_BUCKETS, registry=registry)
        self.message_events = Histogram(
            "meterline_ingest_message_events", "Events per Kafka message (contract batch) produced.",
            buckets=_EVENTS_BUCKETS, registry=registry)
        self.unacked_events = Gauge(
            "meterline_ingest_unacked_events", "Events queued for Kafka and not yet acknowledged.",
            registry=registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
