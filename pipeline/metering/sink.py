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

from dataclasses import dataclass
from decimal import Decimal

import msgspec
import numpy as np
from clickhouse_connect.driver.client import Client

from pipeline.metering.dedup import SeenRequests
from pipeline.metering.failpoints import Failpoints
from pipeline.clock import HOUR_S, WINDOWS_PER_HOUR
from pipeline.measures import COSTS, COUNTED, UNIT_COSTS, UNITS, UNPRICED, USAGE_MEASURES, Dimensions
from pipeline.metering.money import USD_DECIMALS, quantize_usd, usd_text
from pipeline.metering.rollup import RequestKey, Rollup

NO_PROGRESS = -1
_NO_TIME = msgspec.Raw(b"0")  # DateTime64 zero: a row that claims no freshness
_NONE: dict = {}  # an empty Map: shared, never mutated
_CONFIRM_CHUNK = 20_000
# An insert is atomic only as one part. The client sends a large insert as several blocks; squashing with
# no practical threshold joins them into one block, hence one part. The block's rows are already one per sorting
# key (one per group, outcome and partition), so ClickHouse's pre-merge of the block (optimize_on_insert) would find
# nothing to merge; skipping it takes about a fifth off the insert, which pays for the read projections written
# with every part (migration 0008; bench/read.py --ingest measures both).
_ONE_BLOCK = {
    "insert_deduplicate": 1,
    "optimize_on_insert": 0,
    "min_insert_block_size_rows": 1_000_000_000,
    "min_insert_block_size_bytes": 1 << 40,
    "max_insert_block_size": 1_000_000_000,
    "max_partitions_per_insert_block": 1,
}

# One row kind per purpose in the one table a flush writes (schemas/migrations/0001_rollups.sql).
# A Dimensions' window is stored as its UTC hour and quarter (0..3), so hourly readers stay unchanged.
_GROUP_COLUMNS = ("api_key_id", "org_id", "project_id", "model", "provider", "hour", "quarter", "price_version")
# Costs travel as integer units of 1e-24 USD in two EPHEMERAL columns; ClickHouse derives input_cost, output_cost
# and total_cost (Decimal(38, 24)) from them exactly (schemas/migrations/0006_cost_units.sql).
COST_UNITS_COLUMNS = ("input_cost_units", "output_cost_units")
# The per-unit costs likewise travel as integer units in an EPHEMERAL map (schemas/migrations/0007_usage_units.sql).
UNIT_COST_UNITS_COLUMN = "unit_cost_units"
ROLLUP_COLUMNS = ("kind", *_GROUP_COLUMNS, "kafka_topic", "kafka_partition", "outcome", "reason",
                  *(measure.name for measure in USAGE_MEASURES if measure not in COSTS and measure is not UNIT_COSTS),
                  *COST_UNITS_COLUMNS, UNIT_COST_UNITS_COLUMN, "events", "last_offset", "counted_through")
DEDUP_COLUMNS = ("kafka_topic", "kafka_partition", "api_key_id", "request_id", "hour", "batch_end_offset",
                 "expires_at")


class FencedError(RuntimeError):
    """Another writer advanced this partition: this worker's view of it is stale and must be reloaded."""

    def __init__(self, partition: int, expected: int, found: int) -> None:
        super().__init__(f"partition {partition}: expected progress {expected}, found {found}")
        self.partition, self.expected, self.found = partition, expected, found


@dataclass(frozen=True)
class EncodedFlush:
    request_ids: bytes | None  # dedup_keys rows, None when the flush counted no event
    rollups: bytes  # usage deltas + outcomes + progress: the one atomic insert


@dataclass(frozen=True)
class FlushRange:
    partition: int
    first_offset: int
    last_offset: int
    expected_progress: int  # what this worker believes the partition's progress is before the flush
    # Freshness (epoch ms): every message the partition held in Kafka before this instant is counted once the
    # flush commits. 0 when unknown (never claims freshness).
    counted_through_ms: int = 0


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

    def confirm_seen(self, partition: int, progress: int, requests: list[RequestKey]) -> set[RequestKey]:
        """Which of ``requests`` were counted by a committed flush of ``partition``.

        A request is (api_key_id, request_id). Ids recorded before migration 0004 have no api_key_id and keep
        their old identity (the request id alone in its partition) until they expire."""
        stored: set[tuple[str, str]] = set()
        for start in range(0, len(requests), _CONFIRM_CHUNK):
            ids = list({request.request_id for request in requests[start:start + _CONFIRM_CHUNK]})
            stored.update(self._client.query(
                "SELECT DISTINCT api_key_id, request_id FROM dedup_keys WHERE kafka_topic = {t:String} "
                "AND kafka_partition = {p:UInt32} AND batch_end_offset <= {o:Int64} "
                "AND request_id IN {ids:Array(String)}",
                parameters={"t": self._topic, "p": partition, "o": progress, "ids": ids},
            ).result_rows)
        return {request for request in requests
                if (request.api_key_id, request.request_id) in stored or ("", request.request_id) in stored}

    def encode(self, flush: FlushRange, rollup: Rollup) -> EncodedFlush:
        """The flush's two inserts as JSONColumns bodies: pure CPU work, done before touching ClickHouse.
        (msgspec-encoded JSONColumns parsed by ClickHouse is several times faster than building Native
        blocks value by value in Python, and exact: decimals travel as text.)"""
        return EncodedFlush(_encode(self._request_id_columns(flush, rollup)) if rollup.new_requests else None,
                            _encode(rollup_columns(self._topic, flush, rollup)))

    def _request_id_columns(self, flush: FlushRange, rollup: Rollup) -> dict[str, list]:
        hours = [hour * 3600 for hour in rollup.new_request_hours]
        n = len(hours)
        return {"kafka_topic": [self._topic] * n, "kafka_partition": [flush.partition] * n,
                "api_key_id": [api_key_id for api_key_id, _ in rollup.new_requests],
                "request_id": [request_id for _, request_id in rollup.new_requests], "hour": hours,
                "batch_end_offset": [flush.last_offset] * n,
                "expires_at": [hour + self._keep_ids_s for hour in hours]}

    def write_request_ids(self, encoded: EncodedFlush) -> None:
        if encoded.request_ids is not None:
            self._client.raw_insert("dedup_keys", DEDUP_COLUMNS, insert_block=encoded.request_ids,
                                    fmt="JSONColumns")
        self._failpoints.hit("after_dedup_keys")

    def commit(self, flush: FlushRange, encoded: EncodedFlush) -> bool:
        """Steps 2-4. True if this call landed the flush, False if an earlier attempt already had."""
        found = self.progress(flush.partition)
        if found == flush.last_offset:
            return False
        if found != flush.expected_progress:
            raise FencedError(flush.partition, flush.expected_progress, found)
        self._failpoints.hit("before_rollup_insert")
        token = f"{self._topic}/{flush.partition}/{flush.first_offset}"
        self._client.raw_insert("rollups", ROLLUP_COLUMNS, insert_block=encoded.rollups, fmt="JSONColumns",
                                settings={**_ONE_BLOCK, "insert_deduplication_token": token})
        self._failpoints.hit("after_rollup_insert")
        found = self.progress(flush.partition)
        if found != flush.last_offset:
            raise FencedError(flush.partition, flush.last_offset, found)
        return True

    def record_freshness(self, partition: int, progress: int, counted_through_ms: int) -> bool:
        """A progress row that changes nothing but the partition's freshness: for a partition with nothing new
        to count, so an idle topic still reads as fresh. Written only while the progress is still ``progress``
        (another owner's flush would fence it); False when it was not written."""
        if self.progress(partition) != progress:
            return False
        row = {"kind": "progress", "kafka_topic": self._topic, "kafka_partition": partition,
               "last_offset": progress, "counted_through": _datetime64_text(counted_through_ms)}
        columns = {name: [row.get(name, _META_DEFAULTS[name])] for name in ROLLUP_COLUMNS}
        self._client.raw_insert("rollups", ROLLUP_COLUMNS, insert_block=_encode(columns), fmt="JSONColumns")
        return True


def rollup_columns(topic: str, flush: FlushRange, rollup: Rollup) -> dict[str, list]:
    """Column-oriented rows of one flush: usage deltas, outcome counts, and the partition's progress."""
    columns = _usage_columns(rollup)
    meta = [{"kind": "outcome", "outcome": outcome.outcome, "reason": outcome.reason, "events": n}
            for outcome, n in rollup.outcomes.items() if n]
    meta.append({"kind": "progress", "last_offset": flush.last_offset,
                 "counted_through": _datetime64_text(flush.counted_through_ms)})
    for row in meta:
        row.update(kafka_topic=topic, kafka_partition=flush.partition)
        for name, column in columns.items():
            column.append(row.get(name, _META_DEFAULTS[name]))
    return columns


# Values of the usage columns in outcome and progress rows: zero sums, empty dimensions.
_META_DEFAULTS = {name: "" for name in ROLLUP_COLUMNS} | {
    measure.name: _NONE if measure.per_unit else "0" if measure.unit == "USD" else 0 for measure in USAGE_MEASURES
} | dict.fromkeys(COST_UNITS_COLUMNS, 0) | {UNIT_COST_UNITS_COLUMN: _NONE, "hour": 0, "quarter": 0,
                                            "kafka_partition": 0, "events": 0, "last_offset": 0,
                                            "counted_through": _NO_TIME}


def _datetime64_text(epoch_ms: int) -> msgspec.Raw:
    """DateTime64(3) as a JSON number ClickHouse reads exactly: epoch seconds with three decimals, written as
    text (never through a float)."""
    return msgspec.Raw(f"{epoch_ms // 1000}.{epoch_ms % 1000:03d}".encode())


def _usage_columns(rollup: Rollup) -> dict[str, list]:
    """One row per group: its dimensions, its counts, its exact costs as integer units (ClickHouse derives the
    Decimal(38, 24) columns from them), and the per-unit maps (``units``, ``unit_costs``)."""
    groups = list(rollup.groups)
    n = len(groups)
    dimensions = {name: list(values) for name, values in zip(Dimensions._fields, zip(*groups))} if n else {
        name: [] for name in Dimensions._fields}
    windows = dimensions.pop("window")
    dimensions["hour"] = [window // WINDOWS_PER_HOUR * HOUR_S for window in windows]
    dimensions["quarter"] = [window % WINDOWS_PER_HOUR for window in windows]
    counts = [rollup.groups[group] for group in groups]
    costs = [rollup.costs.get(group) for group in groups]
    gateway = rollup.gateway_cost
    columns = {
        "kind": ["usage"] * n, **dimensions,
        "kafka_topic": [""] * n, "kafka_partition": [0] * n, "outcome": [""] * n, "reason": [""] * n,
        **{measure.name: [getattr(c, measure.name) for c in counts] for measure in COUNTED},
        "unpriced_requests": [c.requests if g.price_version == UNPRICED else 0 for g, c in zip(groups, counts)],
        "input_cost_units": [0 if cost is None else cost.input_units for cost in costs],
        "output_cost_units": [0 if cost is None else cost.output_units for cost in costs],
        "gateway_cost": [usd_text(_units(gateway[g])) if g in gateway else "0" for g in groups],
        # Per-unit maps as they are: counts, and costs in integer units (a zero left by a duplicate taken back
        # out is harmless: readers drop zero entries).
        UNITS.name: [c.units or _NONE for c in counts],
        UNIT_COST_UNITS_COLUMN: [_NONE if cost is None else cost.by_unit for cost in costs],
        "events": [0] * n, "last_offset": [0] * n, "counted_through": [_NO_TIME] * n,
    }
    return {name: columns[name] for name in ROLLUP_COLUMNS}


def _units(amount: Decimal) -> int:
    return int(quantize_usd(amount).scaleb(USD_DECIMALS))


_encode = msgspec.json.Encoder().encode
