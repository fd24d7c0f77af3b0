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
    flush_max_events: int = 200_000
    price_overrides: Path | None = None


@dataclass(frozen=True)
class ClickHouseSettings:
    url: str = "chdb:///.meterline/clickhouse"
    # Retries of a failed write wait this long at first, doubling up to the cap; they never give up.
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
    max_range_days: int = 400
    # Where a CLI finds a running worker's HTTP API when the embedded store is held by it.
    url: str = "http://127.0.0.1:6066"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".meterline")
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    contract: ContractSettings = field(default_factory=ContractSettings)
    rollup: RollupSettings = field(default_factory=RollupSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    web: WebSettings = field(default_factory=WebSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    # Test-only crash injection (see pipeline/failpoints.py); empty in production.
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
            flush_max_events=e.int("METERLINE_FLUSH_MAX_EVENTS", RollupSettings.flush_max_events, 1),
            price_overrides=Path(overrides).expanduser() if overrides else None,
        ),
        clickhouse=ClickHouseSettings(
            url=e.str("METERLINE_CLICKHOUSE_URL", f"chdb://{(data_dir / 'clickhouse').resolve()}"),
        ),
        web=WebSettings(
            host=e.str("METERLINE_WEB_HOST", WebSettings.host),
            port=e.int("METERLINE_WEB_PORT", WebSettings.port),
        ),
        api=ApiSettings(
            admin_token=e.str("METERLINE_API_ADMIN_TOKEN", ""),
            token_secret=e.str("METERLINE_API_TOKEN_SECRET", ""),
            max_range_days=e.int("METERLINE_API_MAX_RANGE_DAYS", ApiSettings.max_range_days, minimum=1),
            url=e.str("METERLINE_API_URL", f"http://127.0.0.1:{e.int('METERLINE_WEB_PORT', WebSettings.port)}"),
        ),
        failpoints=e.str("METERLINE_FAILPOINTS", ""),
    )
