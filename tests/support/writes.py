"""Writing events to ClickHouse through the worker's own path (draft -> confirm -> finish -> ids -> commit),
without Kafka: for tests of what readers see."""

from __future__ import annotations

import json

from clickhouse_connect.driver.client import Client

from pipeline.contract import ContractDecoder
from pipeline.metering.dedup import SeenRequests
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.pricing import PriceBook
from pipeline.metering.rollup import RawMessage, Rollup, RollupBuilder, TimeBounds
from pipeline.metering.sink import NO_PROGRESS, FlushRange, RollupWriter

WEEK_S = 7 * 86400


def bounds_at(now_ms: int, lateness_ms: int = 400 * 86_400_000) -> TimeBounds:
    """Time bounds at ``now_ms``; the default lateness accepts a year of history."""
    return TimeBounds(now_ms, lateness_ms, 300_000, 86_400_000)


def write_events(client: Client, events: list[dict], now_ms: int, *, topic: str = "usage", partition: int = 0,
                 first_offset: int = 0, expected_progress: int = NO_PROGRESS, bounds: TimeBounds | None = None,
                 prices: PriceBook | None = None) -> tuple[bool, Rollup, FlushRange]:
    """One flush of ``events`` (one message each, keyed by api_key_id) as the worker would write it."""
    writer = RollupWriter(client, topic, WEEK_S, Failpoints())
    messages = [RawMessage(first_offset + i, e.get("api_key_id", "").encode() or None, json.dumps(e).encode())
                for i, e in enumerate(events)]
    builder = RollupBuilder(ContractDecoder(), prices or PriceBook())
    seen = writer.load_seen(partition, expected_progress, 0) if expected_progress >= 0 else SeenRequests()
    draft = builder.draft(messages, bounds or bounds_at(now_ms), seen)
    confirmed = writer.confirm_seen(partition, expected_progress, draft.maybe_seen) if draft.maybe_seen else set()
    rollup = draft.finish(confirmed)
    flush = FlushRange(partition, first_offset, messages[-1].offset, expected_progress)
    encoded = writer.encode(flush, rollup)
    writer.write_request_ids(encoded)
    return writer.commit(flush, encoded), rollup, flush
