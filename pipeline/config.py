"""All of meterline's settings, read from the environment in one place.

Every component receives the frozen objects built here through its constructor; nothing else reads
``os.environ``. Durations accept plain seconds or a unit suffix (``500ms``, ``30s``, ``5m``, ``24h``, ``7d``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
# HMAC-SHA256 key tokens need keys of at least the hash size (RFC 7518 section 3.2); pipeline.usage.tokens agrees.
MIN_TOKEN_SECRET_BYTES = 32
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(ValueError):
    """A setting has a value meterline cannot use; the message names the variable."""


def parse_duration(text: str, name: str = "duration") -> float:
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{name}: {text!r} is not a duration (e.g. 30s, 5m, 24h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class KafkaSettings:
    brokers: str = "127.0.0.1:9092"
    usage_topic: str = "meterline.usage.v1"
    dlq_topic: str = "meterline.usage.v1.dlq"
    partitions: int = 4
    replication_factor: int = 1
    group_id: str = "meterline"
    # How long a silent worker keeps its partitions; also how long a killed worker's partitions wait.
    session_timeout_s: float = 30.0


@dataclass(frozen=True)
class ContractSettings:
    max_batch_events: int = 1000


@dataclass(frozen=True)
class RollupSettings:
    dedup_horizon_s: float = 24 * 3600.0
    max_lateness_s: float = 7 * 86400.0
    max_future_skew_s: float = 300.0
    flush_interval_s: float = 1.0
    # Flush early once this many bytes of messages are buffered (reading pauses at twice as much). A flush's
    # working set grows with it: smaller saves memory, larger amortises each insert (bench/RESULTS.md).
    flush_max_bytes: int = 8 * 1024 * 1024
    price_overrides: Path | None = None


@dataclass(frozen=True)
class ClickHouseSettings:
    url: str = "chdb:///.meterline/clickhouse"
    # Retries of a failed ClickHouse call (and of a dead-letter send) wait this long at first, doubling up to
    # the cap; they never give up (an unwritten flush is never skipped).
    retry_initial_s: float = 0.2
    retry_max_s: float = 10.0

    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb://")


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 6066


@dataclass(frozen=True)
class ApiSettings:
    # Bearer token that may read every key; empty disables admin access.
    admin_token: str = ""
    # Secret that signs key-scoped tokens (``meterline token --key K``); empty disables them.
    token_secret: str = ""
    # Secrets that signed earlier tokens, still accepted (never used to sign): a rotation's grace period.
    previous_token_secrets: tuple[str, ...] = ()
    max_range_days: int = 400
    # Where a CLI finds a running worker's HTTP API when the embedded store is held by it.
    url: str = "http://127.0.0.1:6066"

    @property
    def token_secrets(self) -> tuple[str, ...]:
        """Every secret a key token may be signed with, the signing one first; empty: key tokens are off."""
        return (self.token_secret, *self.previous_token_secrets) if self.token_secret else ()


@dataclass(frozen=True)
class IngestSettings:
    """The HTTP collector (``meterline collect``): where it listens and how it batches for Kafka."""

    host: str = "127.0.0.1"
    port: int = 6070
    # Bearer tokens gateways send to POST events; distinct from the API's read tokens. Empty: refuse to start.
    tokens: tuple[str, ...] = ()
    max_body_bytes: int = 16 * 1024 * 1024
    # How long accepted events wait for company before their Kafka message is sent (shared across requests).
    linger_s: float = 0.005
    # How long a request waits for Kafka's acknowledgement before answering 503.
    produce_timeout_s: float = 10.0
    # Idempotent Kafka producer (InitProducerId): a producer retry after a lost acknowledgement cannot write a
    # message twice. Brokers that refuse InitProducerId (the quick start's embedded Tansu) need it off; the
    # worker's request_id deduplication keeps the counts exact either way (docs/ingest.md, "Durability").
    idempotence: bool = True


@dataclass(frozen=True)
class AlertSettings:
    """Usage-spike alerts (docs/alerts.md): detection parameters, static rules file and delivery channels."""

    interval_s: float = 60.0
    # Run the detector inside the worker (on the group leader). Required on the embedded default, where no
    # other process can read the store; switch it off where `meterline alerts run` runs instead.
    in_worker: bool = True
    # Baseline: hourly values of the last N full hours (median + MAD) and the same hour on previous days.
    history_hours: int = 168
    # A key (or key x model) with less usage history than this is "new": static and new-key rules only.
    min_history_hours: int = 24
    factor: float = 3.0
    mad_k: float = 5.0
    # Absolute floors: below them usage never pages, whatever its baseline (tiny keys stay quiet).
    min_tokens: float = 200_000.0
    min_requests: float = 200.0
    min_cost_usd: float = 2.0
    # "New key with large usage": the floors a key without history must exceed to page.
    new_key_tokens: float = 2_000_000.0
    new_key_requests: float = 2_000.0
    new_key_cost_usd: float = 20.0
    rules_file: Path | None = None
    severity: str = "warning"
    resolve_after_runs: int = 2
    # Re-page non-Alertmanager channels while an alert stays open; 0 = only on open and resolve.
    renotify_interval_s: float = 0.0
    alertmanager_url: str = ""
    webhook_url: str = ""
    slack_webhook_url: str = ""
    pagerduty_routing_key: str = ""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    grafana_url: str = ""
    dashboard_url_template: str = "{grafana_url}/d/meterline-key-usage?var-key={api_key_id}"
    runbook_url: str = ""
    delivery_attempts: int = 3
    delivery_timeout_s: float = 10.0
    # Port of the /metrics endpoint of `meterline alerts run`; 0 = none (the worker exports its own).
    metrics_port: int = 0
    # How long a runner's claim on a budget notification lasts (it sends in the first half); a claim of a
    # runner that died is taken over after this.
    budget_claim_lease_s: float = 120.0


@dataclass(frozen=True)
class BudgetSettings:
    """Budget status (docs/alerts.md, "Budgets"): the projection's trend window in complete local days."""

    trend_days: int = 7


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".meterline")
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    contract: ContractSettings = field(default_factory=ContractSettings)
    rollup: RollupSettings = field(default_factory=RollupSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    web: WebSettings = field(default_factory=WebSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    # Test-only crash injection (see pipeline/metering/failpoints.py); empty in production.
    failpoints: str = ""


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: str, default: str) -> str:
        value = self._env.get(name, "")
        return value if value.strip() else default

    def int(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: {raw!r} is not an integer") from None
        if value < minimum:
            raise ConfigError(f"{name}: must be >= {minimum}, got {value}")
        return value

    def bool(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: {raw!r} is not a boolean (true/false)")

    def duration(self, name: str, default: float) -> float:
        raw = self._env.get(name, "").strip()
        return parse_duration(raw, name) if raw else default


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: the process environment)."""
    e = _Env(os.environ if env is None else env)
    data_dir = Path(e.str("METERLINE_DATA_DIR", ".meterline")).expanduser()
    overrides = e.str("METERLINE_PRICE_OVERRIDES", "")
    return Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(
            brokers=e.str("METERLINE_KAFKA_BROKERS", KafkaSettings.brokers),
            usage_topic=e.str("METERLINE_USAGE_TOPIC", KafkaSettings.usage_topic),
            dlq_topic=e.str("METERLINE_DLQ_TOPIC", KafkaSettings.dlq_topic),
            partitions=e.int("METERLINE_TOPIC_PARTITIONS", KafkaSettings.partitions, minimum=1),
            replication_factor=e.int("METERLINE_TOPIC_REPLICATION", 1, minimum=1),
            group_id=e.str("METERLINE_GROUP_ID", KafkaSettings.group_id),
            session_timeout_s=e.duration("METERLINE_KAFKA_SESSION_TIMEOUT", KafkaSettings.session_timeout_s),
        ),
        contract=ContractSettings(
            max_batch_events=e.int("METERLINE_MAX_BATCH_EVENTS", 1000, minimum=1),
        ),
        rollup=RollupSettings(
            dedup_horizon_s=e.duration("METERLINE_DEDUP_HORIZON", RollupSettings.dedup_horizon_s),
            max_lateness_s=e.duration("METERLINE_MAX_LATENESS", RollupSettings.max_lateness_s),
            max_future_skew_s=e.duration("METERLINE_MAX_FUTURE_SKEW", RollupSettings.max_future_skew_s),
            flush_interval_s=e.duration("METERLINE_FLUSH_INTERVAL", RollupSettings.flush_interval_s),
            flush_max_bytes=e.int("METERLINE_FLUSH_MAX_BYTES", RollupSettings.flush_max_bytes, minimum=65536),
            price_overrides=Path(overrides).expanduser() if overrides else None,
        ),
        clickhouse=ClickHouseSettings(
            url=_clickhouse_url(e.str("METERLINE_CLICKHOUSE_URL", f"chdb://{(data_dir / 'clickhouse').resolve()}")),
            retry_initial_s=e.duration("METERLINE_CLICKHOUSE_RETRY_INITIAL", ClickHouseSettings.retry_initial_s),
            retry_max_s=e.duration("METERLINE_CLICKHOUSE_RETRY_MAX", ClickHouseSettings.retry_max_s),
        ),
        web=WebSettings(
            host=e.str("METERLINE_WEB_HOST", WebSettings.host),
            port=e.int("METERLINE_WEB_PORT", WebSettings.port),
        ),
        api=ApiSettings(
            admin_token=e.str("METERLINE_API_ADMIN_TOKEN", ""),
            **_token_secrets(e),
            max_range_days=e.int("METERLINE_API_MAX_RANGE_DAYS", ApiSettings.max_range_days, minimum=1),
            url=e.str("METERLINE_API_URL", f"http://127.0.0.1:{e.int('METERLINE_WEB_PORT', WebSettings.port)}"),
        ),
        ingest=_ingest_settings(e),
        alerts=_load_alert_settings(e),
        budgets=BudgetSettings(trend_days=e.int("METERLINE_BUDGET_TREND_DAYS", BudgetSettings.trend_days, minimum=1)),
        failpoints=e.str("METERLINE_FAILPOINTS", ""),
    )


def _clickhouse_url(url: str) -> str:
    if not url.startswith(("chdb://", "http://", "https://")):
        raise ConfigError(f"METERLINE_CLICKHOUSE_URL: {url!r} is neither chdb:///dir (embedded) nor "
                          "http(s)://user:pass@host:8123/db (a ClickHouse server)")
    return url


def _token_secrets(e: _Env) -> dict:
    """``METERLINE_API_TOKEN_SECRET`` signs key tokens; ``METERLINE_API_TOKEN_PREVIOUS_SECRETS`` (comma-separated)
    are still accepted. Each must be at least 32 bytes: RFC 7518 section 3.2 for HMAC-SHA256 keys."""
    current = e.str("METERLINE_API_TOKEN_SECRET", "").strip()
    previous = tuple(s.strip() for s in e.str("METERLINE_API_TOKEN_PREVIOUS_SECRETS", "").split(",") if s.strip())
    if previous and not current:
        raise ConfigError("METERLINE_API_TOKEN_PREVIOUS_SECRETS is set without METERLINE_API_TOKEN_SECRET: "
                          "set the new secret there (docs/deploy.md, rotating the token secret)")
    named = [("METERLINE_API_TOKEN_PREVIOUS_SECRETS", secret) for secret in previous]
    if current:
        named.insert(0, ("METERLINE_API_TOKEN_SECRET", current))
    for name, secret in named:
        if len(secret.encode()) < MIN_TOKEN_SECRET_BYTES:
            raise ConfigError(f"{name}: a token secret must be at least {MIN_TOKEN_SECRET_BYTES} bytes "
                              f"(e.g. `openssl rand -hex 32`), got {len(secret.encode())}")
    return {"token_secret": current, "previous_token_secrets": previous}


def _ingest_settings(e: _Env) -> IngestSettings:
    tokens = tuple(t.strip() for t in e.str("METERLINE_INGEST_TOKENS", "").split(",") if t.strip())
    return IngestSettings(
        host=e.str("METERLINE_INGEST_HOST", IngestSettings.host),
        port=e.int("METERLINE_INGEST_PORT", IngestSettings.port),
        tokens=tokens,
        max_body_bytes=e.int("METERLINE_INGEST_MAX_BODY_BYTES", IngestSettings.max_body_bytes, minimum=1024),
        linger_s=e.duration("METERLINE_INGEST_LINGER", IngestSettings.linger_s),
        produce_timeout_s=e.duration("METERLINE_INGEST_PRODUCE_TIMEOUT", IngestSettings.produce_timeout_s),
        idempotence=e.bool("METERLINE_INGEST_IDEMPOTENCE", IngestSettings.idempotence),
    )


def _load_alert_settings(e: _Env) -> AlertSettings:
    """``METERLINE_ALERTS_*``; floors and factors accept decimals."""
    d = AlertSettings
    rules_file = e.str("METERLINE_ALERTS_RULES_FILE", "")

    def number(name: str, default: float) -> float:
        raw = e.str(f"METERLINE_ALERTS_{name}", "")
        try:
            value = float(raw) if raw else default
        except ValueError:
            raise ConfigError(f"METERLINE_ALERTS_{name}: {raw!r} is not a number") from None
        if not value >= 0:
            raise ConfigError(f"METERLINE_ALERTS_{name}: must be >= 0, got {raw}")
        return value

    return AlertSettings(
        interval_s=e.duration("METERLINE_ALERTS_INTERVAL", d.interval_s),
        in_worker=e.bool("METERLINE_ALERTS_IN_WORKER", d.in_worker),
        history_hours=e.int("METERLINE_ALERTS_HISTORY_HOURS", d.history_hours, minimum=24),
        min_history_hours=e.int("METERLINE_ALERTS_MIN_HISTORY_HOURS", d.min_history_hours, minimum=1),
        factor=number("FACTOR", d.factor),
        mad_k=number("MAD_K", d.mad_k),
        min_tokens=number("MIN_TOKENS", d.min_tokens),
        min_requests=number("MIN_REQUESTS", d.min_requests),
        min_cost_usd=number("MIN_COST_USD", d.min_cost_usd),
        new_key_tokens=number("NEW_KEY_TOKENS", d.new_key_tokens),
        new_key_requests=number("NEW_KEY_REQUESTS", d.new_key_requests),
        new_key_cost_usd=number("NEW_KEY_COST_USD", d.new_key_cost_usd),
        rules_file=Path(rules_file).expanduser() if rules_file else None,
        severity=e.str("METERLINE_ALERTS_SEVERITY", d.severity),
        resolve_after_runs=e.int("METERLINE_ALERTS_RESOLVE_AFTER_RUNS", d.resolve_after_runs, minimum=1),
        renotify_interval_s=e.duration("METERLINE_ALERTS_RENOTIFY_INTERVAL", d.renotify_interval_s),
        alertmanager_url=e.str("METERLINE_ALERTS_ALERTMANAGER_URL", ""),
        webhook_url=e.str("METERLINE_ALERTS_WEBHOOK_URL", ""),
        slack_webhook_url=e.str("METERLINE_ALERTS_SLACK_WEBHOOK_URL", ""),
        pagerduty_routing_key=e.str("METERLINE_ALERTS_PAGERDUTY_ROUTING_KEY", ""),
        pagerduty_url=e.str("METERLINE_ALERTS_PAGERDUTY_URL", d.pagerduty_url),
        grafana_url=e.str("METERLINE_ALERTS_GRAFANA_URL", "").rstrip("/"),
        dashboard_url_template=e.str("METERLINE_ALERTS_DASHBOARD_URL_TEMPLATE", d.dashboard_url_template),
        runbook_url=e.str("METERLINE_ALERTS_RUNBOOK_URL", ""),
        delivery_attempts=e.int("METERLINE_ALERTS_DELIVERY_ATTEMPTS", d.delivery_attempts, minimum=1),
        delivery_timeout_s=e.duration("METERLINE_ALERTS_DELIVERY_TIMEOUT", d.delivery_timeout_s),
        metrics_port=e.int("METERLINE_ALERTS_METRICS_PORT", d.metrics_port),
        budget_claim_lease_s=_lease(e),
    )


def _lease(e: _Env) -> float:
    lease = e.duration("METERLINE_ALERTS_BUDGET_CLAIM_LEASE", AlertSettings.budget_claim_lease_s)
    if lease < 2:
        raise ConfigError(f"METERLINE_ALERTS_BUDGET_CLAIM_LEASE: must be at least 2s, got {lease:g}s")
    return lease
