"""Writing one partition's flush to ClickHouse with an exactly-once effect.

Order of a flush of offsets [first, last] of partition p (see docs/exactly-once.md for the argument):

1. request ids of the flush -> ``dedup_keys``, tagged ``batch_end_offset = last`` (trusted only once
   progress reaches ``last``, so a flush that dies after this step leaves nothing that counts);
2. check that p's progress is still what this worker last wrote (another worker may own p now);
3. ONE insert into ``rollups``: usage deltas + outcome counts + the progress row ``last``, with
   ``insert_deduplication_token = topic/p/first``. One insert is one part: all of it lands or none;
4. read the progress back: ``last`` means committed; anything else means another writer won the race.

A retry after an error repeats 2-4: if the progress already shows ``last``, the earlier attempt landed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
from clickhouse_connect.driver.client import Client

from pipeline.dedup import SeenRequests
from pipeline.failpoints import Failpoints
from pipeline.pricing import quantize_usd
from pipeline.rollup import COUNTER_NAMES, GATEWAY_COST_REQUESTS, INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, \
    REASONING, REQUESTS, Rollup

NO_PROGRESS = -1
_CONFIRM_CHUNK = 20_000
_ZERO = Decimal(0)
# An insert is atomic only as one part. The client sends a large insert as several blocks; squashing with
# no practical threshold joins them into one block, hence one part.
_ONE_BLOCK = {
    "insert_deduplicate": 1,
    "min_insert_block_size_rows": 1_000_000_000,
    "min_insert_block_size_bytes": 1 << 40,
    "max_insert_block_size": 1_000_000_000,
    "max_partitions_per_insert_block": 1,
}

ROLLUP_COLUMNS = (
    "kind", "api_key_id", "org_id", "project_id", "model", "provider", "hour", "price_version",
    "kafka_topic", "kafka_partition", "outcome", "reason",
    *COUNTER_NAMES, "input_cost", "output_cost", "total_cost", "gateway_cost", "events", "last_offset",
)
DEDUP_COLUMNS = ("kafka_topic", "kafka_partition", "request_id", "hour", "batch_end_offset", "expires_at")


class FencedError(RuntimeError):
    """Another writer advanced this partition: this worker's view of it is stale and must be reloaded."""

    def __init__(self, partition: int, expected: int, found: int) -> None:
        super().__init__(f"partition {partition}: expected progress {expected}, found {found}")
        self.partition, self.expected, self.found = partition, expected, found


@dataclass(frozen=True)
class FlushRange:
    partition: int
    first_offset: int
    last_offset: int
    expected_progress: int  # what this worker believes the partition's progress is before the flush


class RollupWriter:
    def __init__(self, client: Client, topic: str, max_lateness_s: float, failpoints: Failpoints) -> None:
        self._client = client
        self._topic = topic
        self._keep_ids_s = int(max_lateness_s) + 86_400
        self._failpoints = failpoints

    def progress(self, partition: int) -> int:
        rows = self._client.query(
            "SELECT last_offset FROM ingest_progress WHERE kafka_topic = {t:String} AND kafka_partition = {p:UInt32}",
            parameters={"t": self._topic, "p": partition},
        ).result_rows
        return rows[0][0] if rows else NO_PROGRESS

    def load_seen(self, partition: int, progress: int, since_hour: int) -> SeenRequests:
        """The committed request ids of ``partition`` with event hour >= ``since_hour`` (hours since epoch)."""
        result = self._client.query_np(
            "SELECT xxHash64(request_id) AS h, toUInt32(toUnixTimestamp(hour) / 3600) AS hr FROM dedup_keys "
            "WHERE kafka_topic = {t:String} AND kafka_partition = {p:UInt32} AND batch_end_offset <= {o:Int64} "
            "AND hour >= toDateTime({since:UInt32} * 3600)",
            parameters={"t": self._topic, "p": partition, "o": progress, "since": since_hour},
        )
        if not len(result):
            return SeenRequests()
        return SeenRequests(np.asarray(result["h"], dtype=np.uint64), np.asarray(result["hr"], dtype=np.uint32))

    def confirm_seen(self, partition: int, progress: int, request_ids: list[str]) -> set[str]:
        """Which of ``request_ids`` were counted by a committed flush of ``partition``."""
        seen: set[str] = set()
        for start in range(0, len(request_ids), _CONFIRM_CHUNK):
            rows = self._client.query(
                "SELECT DISTINCT request_id FROM dedup_keys WHERE kafka_topic = {t:String} "
                "AND kafka_partition = {p:UInt32} AND batch_end_offset <= {o:Int64} "
                "AND request_id IN {ids:Array(String)}",
                parameters={"t": self._topic, "p": partition, "o": progress,
                            "ids": request_ids[start:start + _CONFIRM_CHUNK]},
            ).result_rows
            seen.update(row[0] for row in rows)
        return seen

    def write_request_ids(self, flush: FlushRange, rollup: Rollup) -> None:
        ids = rollup.new_request_ids
        if not ids:
            return
        hours = np.asarray(rollup.new_request_hours, dtype=np.int64) * 3600
        columns = [
            [self._topic] * len(ids), [flush.partition] * len(ids), ids, hours.tolist(),
            [flush.last_offset] * len(ids), (hours + self._keep_ids_s).tolist(),
        ]
        self._client.insert("dedup_keys", columns, column_names=DEDUP_COLUMNS, column_oriented=True)
        self._failpoints.hit("after_dedup_keys")

    def commit(self, flush: FlushRange, rollup: Rollup) -> bool:
        """Steps 2-4. True if this call landed the flush, False if an earlier attempt already had."""
        found = self.progress(flush.partition)
        if found == flush.last_offset:
            return False
        if found != flush.expected_progress:
            raise FencedError(flush.partition, flush.expected_progress, found)
        columns = rollup_columns(self._topic, flush, rollup)
        self._failpoints.hit("before_rollup_insert")
        token = f"{self._topic}/{flush.partition}/{flush.first_offset}"
        self._client.insert("rollups", columns, column_names=ROLLUP_COLUMNS, column_oriented=True,
                            settings={**_ONE_BLOCK, "insert_deduplication_token": token})
        self._failpoints.hit("after_rollup_insert")
        found = self.progress(flush.partition)
        if found != flush.last_offset:
            raise FencedError(flush.partition, flush.last_offset, found)
        return True


def rollup_columns(topic: str, flush: FlushRange, rollup: Rollup) -> list[list]:
    """Column-oriented rows of one flush: usage deltas, outcome counts, and the progress row last."""
    columns: list[list] = [[] for _ in ROLLUP_COLUMNS]
    (kind, key, org, project, model, provider, hour, version, topic_col, partition_col, outcome, reason) = columns[:12]
    counters = columns[12:12 + len(COUNTER_NAMES)]
    input_cost, output_cost, total_cost, gateway_cost, events, last_offset = columns[12 + len(COUNTER_NAMES):]

    def _row(kind_name: str, meta: tuple, counts: list, costs: tuple, n_events: int, offset: int) -> None:
        kind.append(kind_name)
        for column, value in zip((key, org, project, model, provider, hour, version, topic_col, partition_col,
                                  outcome, reason), meta):
            column.append(value)
        for column, value in zip(counters, counts):
            column.append(value)
        for column, value in zip((input_cost, output_cost, total_cost, gateway_cost), costs):
            column.append(value)
        events.append(n_events)
        last_offset.append(offset)

    zero_counts = [0] * len(COUNTER_NAMES)
    zero_costs = (_ZERO, _ZERO, _ZERO, _ZERO)
    for group, counts in rollup.groups.items():
        api_key_id, org_id, project_id, model_name, provider_name, hour_s, price_version = group
        costs = _costs(rollup, price_version, counts) + (quantize_usd(rollup.gateway_cost.get(group, _ZERO)),)
        meta = (api_key_id, org_id, project_id, model_name, provider_name, _utc(hour_s), price_version, "", 0, "", "")
        _row("usage", meta, counts, costs, 0, 0)
    for (outcome_name, reason_name), n in rollup.outcomes.items():
        if n:
            meta = ("", "", "", "", "", _utc(0), "", topic, flush.partition, outcome_name, reason_name)
            _row("outcome", meta, zero_counts, zero_costs, n, 0)
    meta = ("", "", "", "", "", _utc(0), "", topic, flush.partition, "", "")
    _row("progress", meta, zero_counts, zero_costs, 0, flush.last_offset)
    return columns


def _costs(rollup: Rollup, price_version: str, counts: list) -> tuple[Decimal, Decimal, Decimal]:
    rate = rollup.rates.get(price_version)
    if rate is None:
        return _ZERO, _ZERO, _ZERO
    input_cost, output_cost = rate.cost(counts[REQUESTS], counts[INPUT], counts[CACHE_READ], counts[CACHE_WRITE],
                                        counts[OUTPUT], counts[REASONING])
    return quantize_usd(input_cost), quantize_usd(output_cost), quantize_usd(input_cost + output_cost)


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
