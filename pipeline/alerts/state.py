"""Alert state in ClickHouse (``alert_state``, schemas/migrations/0003_alert_state.sql).

It survives restarts with the data it is about, in the store every deployment already has (embedded or
server), with no second database to run. One row per alert key; every change is a new row with
``version = max(previous + 1, now in ms)`` in a ReplacingMergeTree, read with FINAL (the table is tiny).
One runner writes it at a time: the worker's leader timer or ``meterline alerts run``, not both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from clickhouse_connect.driver.client import Client

from pipeline.alerts.model import FIRING, AlertKey
from pipeline.clickhouse import ClickHouse

COLUMNS = (
    "api_key_id", "model", "metric", "status", "severity", "rule", "reason", "opened_at", "resolved_at",
    "updated_at", "value", "threshold", "baseline", "peak", "below_runs", "delivered", "delivered_at", "version",
)

# Open alerts, and resolved ones whose resolution some enabled channel was not yet told (it was told they fired).
_LOAD = f"""
SELECT {", ".join(COLUMNS)}
FROM (SELECT * FROM alert_state FINAL)
WHERE status = 'firing' OR arrayExists(c -> delivered[c] = 'firing', {{channels:Array(String)}})
ORDER BY api_key_id, model, metric
"""
_LIST = f"SELECT {', '.join(COLUMNS)} FROM (SELECT * FROM alert_state FINAL) WHERE status = 'firing' " \
        "ORDER BY opened_at, api_key_id, model, metric"


@dataclass(frozen=True)
class AlertRecord:
    key: AlertKey
    status: str  # FIRING or RESOLVED
    severity: str
    rule: str
    reason: str
    opened_at: datetime
    resolved_at: datetime | None
    updated_at: datetime
    value: float  # the latest observed value
    threshold: float
    baseline: float
    peak: float  # the highest value while open
    below_runs: int  # consecutive runs below the threshold (hysteresis before resolving)
    delivered: dict[str, str] = field(default_factory=dict)  # channel -> last phase it was told
    delivered_at: dict[str, datetime] = field(default_factory=dict)  # channel -> when
    version: int = 0

    @property
    def firing(self) -> bool:
        return self.status == FIRING

    def row(self) -> list:
        k = self.key
        return [k.api_key_id, k.model, k.metric, self.status, self.severity, self.rule, self.reason,
                self.opened_at, self.resolved_at, self.updated_at, self.value, self.threshold, self.baseline,
                self.peak, self.below_runs, dict(self.delivered), dict(self.delivered_at), self.version]

    @classmethod
    def from_row(cls, row: tuple) -> "AlertRecord":
        (key_id, model, metric, status, severity, rule, reason, opened_at, resolved_at, updated_at, value,
         threshold, baseline, peak, below_runs, delivered, delivered_at, version) = row
        return cls(AlertKey(key_id, model, metric), status, severity, rule, reason, _aware(opened_at),
                   _aware(resolved_at) if resolved_at else None, _aware(updated_at), value, threshold, baseline,
                   peak, below_runs, dict(delivered), {c: _aware(t) for c, t in delivered_at.items()}, version)


class AlertStateStore:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    async def load_active(self, channels: list[str]) -> dict[AlertKey, AlertRecord]:
        """Open alerts, plus resolved ones with a resolution still owed to one of ``channels``."""
        rows = await self._clickhouse.query_rows(_LOAD, {"channels": channels})
        return {record.key: record for record in map(AlertRecord.from_row, rows)}

    async def list_open(self) -> list[AlertRecord]:
        return [AlertRecord.from_row(row) for row in await self._clickhouse.query_rows(_LIST)]

    async def save(self, records: list[AlertRecord]) -> None:
        """One insert with every changed record (each already carries its next version)."""
        if records:
            await self._clickhouse.run(self._clickhouse.client.insert, "alert_state",
                                       [r.row() for r in records], column_names=COLUMNS)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# One key's alerts, open or resolved, that overlap [start, end): opened before the end, and still open or
# resolved at or after the start. api_key_id leads the sorting key, so the filter is safe before FINAL.
_KEY_ALERTS = f"""
SELECT {", ".join(COLUMNS)}
FROM (SELECT * FROM alert_state FINAL WHERE api_key_id = {{api_key_id:String}})
WHERE opened_at < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')
  AND (resolved_at IS NULL OR resolved_at >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC'))
ORDER BY opened_at, model, metric
"""


def read_key_alerts(client: Client, api_key_id: str, start: datetime, end: datetime) -> list[AlertRecord]:
    """The alerts of ``api_key_id`` (every model and metric) open at some instant of [start, end), oldest
    first. ``alert_state`` keeps one row per key x model x metric, so a series that spiked again shows its
    latest alert only. Synchronous (a plain clickhouse-connect client): run it off the event loop."""
    rows = client.query(_KEY_ALERTS, parameters={
        "api_key_id": api_key_id, "start_ms": _epoch_ms(start), "end_ms": _epoch_ms(end)}).result_rows
    return [AlertRecord.from_row(row) for row in rows]


def _epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, rounded up (a bound at .0005 s still excludes what precedes it)."""
    return -(-(moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1))
