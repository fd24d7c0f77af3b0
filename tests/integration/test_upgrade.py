"""A store written before migration 0005 (hourly rows, request ids without their api key) upgrades mid-stream
with retries in flight, and nothing is counted twice.

The pre-upgrade state is what the worker of that schema committed for the first half of a topic: usage rows per
hour, the progress row, and dedup_keys rows without api_key_id (written here with that schema's columns). Then the
migration runs, and today's worker resumes the topic, whose second half holds new events, retries of events the
old worker counted, and two tenants reusing one request id.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.clickhouse import connect
from pipeline.migrations import Migrator, discover
from support.processes import ChdbHttpProcess, WorkerProcess, wait_until_counted

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

HOUR_MS = 3_600_000


def event(request_id: str, key: str, ts_ms: int, tokens: int) -> dict:
    return {"request_id": request_id, "api_key_id": key, "model": "gpt-4o-mini", "timestamp": ts_ms,
            "input_tokens": tokens, "output_tokens": 1}


async def produce(bootstrap: str, topic: str, events: list[dict]) -> list[int]:
    """Offsets, all on partition 0."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, json.dumps(e).encode(), key=e["api_key_id"].encode(), partition=0)
                   for e in events]
        return [(await future).offset for future in futures]
    finally:
        await producer.stop()


def commit_as_before_0005(client, topic: str, events: list[dict], last_offset: int) -> None:
    """What the worker of schema 0004 committed for ``events``: hourly usage, progress, ids without a key."""
    sums: Counter = Counter()
    for e in events:
        hour = e["timestamp"] // HOUR_MS * 3600
        sums[(e["api_key_id"], hour, "requests")] += 1
        sums[(e["api_key_id"], hour, "input_tokens")] += e["input_tokens"]
        sums[(e["api_key_id"], hour, "output_tokens")] += e["output_tokens"]
    groups = sorted({(key, hour) for key, hour, _ in sums})
    rows = [["usage", key, hour, "gpt-4o-mini", "", sums[(key, hour, "requests")],
             sums[(key, hour, "input_tokens")], sums[(key, hour, "output_tokens")], "", 0, 0] for key, hour in groups]
    rows.append(["progress", "", 0, "", topic, 0, 0, 0, topic, 0, last_offset])
    client.insert("rollups", [[r[0], r[1], r[2], r[3], r[8] if r[0] == "progress" else "", r[9], r[5], r[6], r[7],
                               r[10]] for r in rows],
                  column_names=["kind", "api_key_id", "hour", "model", "kafka_topic", "kafka_partition", "requests",
                                "input_tokens", "output_tokens", "last_offset"])
    client.insert("dedup_keys", [[topic, 0, e["request_id"], e["timestamp"] // HOUR_MS * 3600, last_offset,
                                  e["timestamp"] // 1000 + 8 * 86400] for e in events],
                  column_names=["kafka_topic", "kafka_partition", "request_id", "hour", "batch_end_offset",
                                "expires_at"])


async def test_an_upgrade_mid_stream_with_retries_in_flight_counts_everything_once(kafka_bootstrap, new_topic,
                                                                                   tmp_path):
    topic = await new_topic(partitions=1)
    now = time.time_ns() // 1_000_000
    before = [event(f"r-{i}", f"k{i % 3}", now - (i % 5) * HOUR_MS, 10 + i) for i in range(60)]
    after = ([event(f"n-{i}", f"k{i % 3}", now - (i % 3) * HOUR_MS, 500 + i) for i in range(30)]
             + [dict(e) for e in before[::7]]  # retries of counted events, in flight across the upgrade
             + [event("r-1", "k-other", now, 7)]  # another tenant's request with an id the old worker counted
             + [event("n-0", "k-other", now, 8)])  # and one with an id counted after the upgrade
    offsets = await produce(kafka_bootstrap, topic, before + after)

    server = ChdbHttpProcess(tmp_path / "clickhouse").start()
    url = f"{server.url}/meterline"
    client = connect(url, create_database=True)
    Migrator(client, [m for m in discover() if m.id < "0005"]).apply()
    commit_as_before_0005(client, topic, before, offsets[len(before) - 1])
    assert Migrator(client).apply()  # the upgrade: 0005 and anything after it
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}").start()
    try:
        wait_until_counted([worker], {0: offsets[-1]}, timeout=180)
        assert worker.metric("meterline_events_duplicate_total") == len(before[::7]) + 1  # + k-other's r-1
    finally:
        worker.stop()
    totals = dict(client.query("SELECT api_key_id, sum(requests) FROM usage_hourly GROUP BY api_key_id").result_rows)
    # k-other's "r-1" shares an id with a request counted before the upgrade, when ids had no key: it keeps
    # that old, narrower identity until its row expires; "n-0" was counted after, under the new identity.
    assert totals == {"k0": 30, "k1": 30, "k2": 30, "k-other": 1}
    tokens = client.query("SELECT sum(input_tokens) FROM usage_hourly").result_rows[0][0]
    assert tokens == sum(e["input_tokens"] for e in before + after[:30]) + 8
    server.kill()
