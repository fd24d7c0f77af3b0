"""Exact totals in every time zone, end to end: events through a real Kafka broker and a worker into ClickHouse,
read back by the query module in zones whose offsets are not whole hours, across DST changes, and compared with a
ledger computed with Python's zoneinfo alone.

The stream runs from 2026-09-27 to 2026-11-10 UTC, one event every 5 minutes with distinct token counts, so a
window booked to the wrong local day (or week, or month) changes a sum. It spans Australia/Lord_Howe's 30-minute
DST shift (2026-10-04) and America/St_Johns' DST end (2026-11-01).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.clickhouse import connect
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_request
from support.processes import ChdbHttpProcess, WorkerProcess, wait_until_counted

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

ZONES = ("Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla", "America/St_Johns", "Australia/Lord_Howe", "UTC")
START = datetime(2026, 9, 27, tzinfo=UTC)
END = datetime(2026, 11, 10, tzinfo=UTC)
STEP = timedelta(minutes=5)
KEY = "key-zones"


def stream() -> list[dict]:
    events, instant, i = [], START, 0
    while instant < END:
        events.append({"request_id": f"z-{i}", "api_key_id": KEY, "model": "gpt-4o-mini",
                       "timestamp": int(instant.timestamp() * 1000), "input_tokens": 1 + i % 997, "output_tokens": 1})
        instant += STEP
        i += 1
    return events


def bucket_of(instant: datetime, zone: ZoneInfo, granularity: str) -> date:
    local = instant.astimezone(zone).date()
    if granularity == "week":
        return local - timedelta(days=local.weekday())
    return local.replace(day=1) if granularity == "month" else local


def ledger(events: list[dict], zone: ZoneInfo, first: date, last: date, granularity: str) -> dict[date, tuple]:
    """Requests and input tokens per local bucket of the events in [first 00:00, last 00:00) local time."""
    start = datetime.combine(first, datetime.min.time(), zone)
    end = datetime.combine(last, datetime.min.time(), zone)
    sums: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        instant = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
        if start <= instant < end:
            row = sums[bucket_of(instant, zone, granularity)]
            row[0] += 1
            row[1] += event["input_tokens"]
    return {bucket: tuple(row) for bucket, row in sums.items()}


async def produce(bootstrap: str, topic: str, events: list[dict]) -> dict[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, json.dumps(e).encode(), key=KEY.encode()) for e in events]
        last: dict[int, int] = {}
        for future in futures:
            meta = await future
            last[meta.partition] = max(meta.offset, last.get(meta.partition, -1))
        return last
    finally:
        await producer.stop()


async def test_day_week_and_month_totals_are_exact_in_every_zone(kafka_bootstrap, new_topic, tmp_path):
    topic = await new_topic(partitions=2)
    events = stream()
    last_offsets = await produce(kafka_bootstrap, topic, events)
    server = ChdbHttpProcess(tmp_path / "clickhouse").start()
    url = f"{server.url}/meterline"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}",
                           extra_env={"METERLINE_MAX_LATENESS": "400d"}).start()
    try:
        wait_until_counted([worker], last_offsets, timeout=240)
    finally:
        worker.stop()
    queries = UsageQueries(connect(url))
    try:
        for tz in ZONES:
            zone = ZoneInfo(tz)
            for granularity, first, last in (("day", date(2026, 9, 28), date(2026, 11, 9)),
                                             ("week", date(2026, 9, 28), date(2026, 11, 9)),
                                             ("month", date(2026, 10, 1), date(2026, 11, 1))):
                request = parse_request("key", KEY, first.isoformat(), last.isoformat(), tz, granularity)
                series = queries.series(request)
                got = {b.start.date(): (b.requests, b.input_tokens) for b in series.buckets if b.requests}
                assert got == ledger(events, zone, first, last, granularity), (tz, granularity)
            day = parse_request("key", KEY, "2026-10-04", "2026-10-05", tz, "day")
            expected = ledger(events, zone, date(2026, 10, 4), date(2026, 10, 5), "day")[date(2026, 10, 4)]
            summary = queries.summary(day).totals
            assert (summary.requests, summary.input_tokens) == expected, tz
    finally:
        server.kill()
