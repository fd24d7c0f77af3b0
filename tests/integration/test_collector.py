"""The collector against real Apache Kafka and a real worker: exact totals over HTTP, and no loss of any
acknowledged event when Kafka stops mid-burst.

The ledger is the set of distinct events the clients got a 200 for; usage_hourly must equal it exactly,
whatever repeats (client retries) reached Kafka: the worker keeps the first occurrence of a request_id.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.devtools.brokers import ApacheKafka
from pipeline.kafka import create_topics
from pipeline.config import load_settings
from pipeline.contract import hash_api_key
from pipeline.ingest.producer import BatchSender, OutgoingMessage, kafka_partition, new_producer
from pipeline.ingest.server import CollectorService
from support.processes import WorkerProcess, read_clickhouse, wait_until_counted
from support.workload import USAGE_SQL, Message, Placed, canonical, event_for, ledger_of, secret_of, usage_from_rows
from support.collector import TOKEN, ClientReport, CollectorProcess, send_until_acked, topic_contents

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]
HOUR_MS = 3_600_000


def generate(n: int, seed: int, keys: int = 40, tag: str = "h") -> list[dict]:
    """Distinct valid events over the last 30 hours; some keys send their raw secret instead of an id."""
    rng, now = random.Random(seed), time.time_ns() // 1_000_000
    events = []
    for i in range(n):
        key = f"key-{rng.randrange(keys):02d}"
        event = event_for(rng, key, i, now, rng.randint(0, 30 * HOUR_MS), tag)
        if rng.random() < 0.02:
            event["api_key"] = secret_of(event.pop("api_key_id"))
        events.append(event)
    return events


def chunked(events: list[dict], size: int) -> list[list[dict]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


def assert_rollups_equal(url: str, events: list[dict]) -> None:
    """usage_hourly == the ledger of ``events`` (distinct request ids), priced independently."""
    placed = []
    for offset, event in enumerate(events):
        key = event.get("api_key_id") or hash_api_key(event["api_key"])
        message = Message(key, b"", [event], True, None, [None])
        placed.append(Placed(message, kafka_partition(key.encode(), 4), offset))
    assert usage_from_rows(read_clickhouse(url, USAGE_SQL)) == canonical(ledger_of(placed).usage)


def outcomes(url: str) -> Counter:
    rows = read_clickhouse(url, "SELECT outcome, sum(events) FROM ingest_outcomes GROUP BY outcome")
    return Counter({outcome: int(n) for outcome, n in rows})


async def test_partition_choice_matches_a_plain_keyed_send(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=6)
    keys = [f"key-{i:03d}".encode() for i in range(60)] + [hash_api_key("sk-x").encode()]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        keyed = {key: (await (await producer.send(topic, b"[]", key=key))).partition for key in keys}
    finally:
        await producer.stop()
    batch_producer = new_producer(kafka_bootstrap, request_timeout_s=30)
    await batch_producer.start()
    try:
        loop = asyncio.get_running_loop()
        messages = [OutgoingMessage(key, [b"{}"], 3, loop.create_future()) for key in keys]
        await BatchSender(batch_producer, topic).send(messages)
        await asyncio.gather(*(m.acked for m in messages))
    finally:
        await batch_producer.stop()
    assert {key: kafka_partition(key, 6) for key in keys} == keyed
    landed: dict[bytes, set[int]] = {}
    for key, partition in await _keys_and_partitions(kafka_bootstrap, topic):
        landed.setdefault(key, set()).add(partition)
    assert all(landed[key] == {keyed[key]} for key in keys)  # both paths put each key on one partition


async def _keys_and_partitions(bootstrap: str, topic: str) -> list[tuple[bytes, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(6)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end, out = await consumer.end_offsets(tps), []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                out += [(record.key, tp.partition) for record in batch]
        return out
    finally:
        await consumer.stop()


async def test_a_burst_of_100k_events_over_http_is_counted_exactly_once(kafka_bootstrap, new_topic, tmp_path):
    """20 concurrent clients x 5,000 events (arrays and NDJSON, 500 per request), with 2% of the events sent
    a second time in later requests (gateway retries) and invalid events mixed in."""
    topic = await new_topic(partitions=4)
    events = generate(100_000, seed=9)
    rng = random.Random(5)
    invalid = [dict(e, request_id=f"bad-{i}", input_tokens=-1) for i, e in enumerate(rng.sample(events, 500))]
    repeats = rng.sample(events, 2_000)
    streams = [events[i::20] + repeats[i::20] + invalid[i::20] for i in range(20)]
    collector = CollectorProcess(tmp_path / "collector", kafka_bootstrap, topic).start()
    reports = [ClientReport() for _ in streams]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(send_until_acked(session, collector.url, chunked(stream, 500), i % 2 == 1, report)
                                   for i, (stream, report) in enumerate(zip(streams, reports))))
    finally:
        assert collector.stop() == 0, collector.log_path.read_text()[-3000:]
    assert sum(r.rejected for r in reports) == len(invalid)
    assert sum(len(r.acked) for r in reports) == len(events) + len(repeats)
    produced, last_offsets = await topic_contents(kafka_bootstrap, topic, 4)
    assert b"sk-live-" not in json.dumps(produced).encode()  # raw secrets were hashed before producing
    assert Counter(e["request_id"] for e in produced) == Counter(e["request_id"] for e in events + repeats)
    url = f"chdb://{tmp_path / 'clickhouse'}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}").start()
    try:
        wait_until_counted([worker], last_offsets, timeout=300)
    finally:
        worker.stop()
    assert_rollups_equal(url, events)
    assert outcomes(url) == Counter({"counted": len(events), "duplicate": len(repeats)})


async def test_kafka_stopped_mid_burst_answers_503_and_loses_no_acknowledged_event(tmp_path):
    """A broker of its own, stopped while 10 clients post: they get 503s and retry; every event ever
    answered 200 is in Kafka after the restart, and the rollups count each request id once."""
    broker = ApacheKafka(tmp_path / "kafka")
    bootstrap = broker.start()
    topic = "meterline.usage.v1"
    try:
        await create_topics(bootstrap, {topic: 4})
        settings = load_settings({"METERLINE_KAFKA_BROKERS": bootstrap, "METERLINE_INGEST_TOKENS": TOKEN,
                                  "METERLINE_INGEST_PORT": "0", "METERLINE_INGEST_PRODUCE_TIMEOUT": "2s"})
        service = CollectorService(settings)
        await service.start()
        events = generate(30_000, seed=13, keys=16, tag="o")
        reports = [ClientReport() for _ in range(10)]
        url = f"http://127.0.0.1:{service.port}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                # Paced (about 10 s without an outage), so that the broker surely stops mid-burst.
                clients = asyncio.gather(*(send_until_acked(session, url, chunked(events[i::10], 100), i % 2 == 0, r,
                                                            pause_s=0.3) for i, r in enumerate(reports)))
                await _wait_for(lambda: sum(len(r.acked) for r in reports) >= 5_000)
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(6)  # clients keep posting into the outage
                await asyncio.to_thread(broker.start)
                await clients
        finally:
            await service.stop()
        assert sum(r.statuses.get(503, 0) for r in reports) > 0
        acked = [e for r in reports for e in r.acked]
        assert {e["request_id"] for e in acked} == {e["request_id"] for e in events}  # all got through in the end
        produced, last_offsets = await topic_contents(bootstrap, topic, 4)
        assert {e["request_id"] for e in acked} <= {e["request_id"] for e in produced}  # nothing acked was lost
        db = f"chdb://{tmp_path / 'clickhouse'}"
        worker = WorkerProcess(tmp_path / "w", bootstrap, topic, db, group="g-outage").start()
        try:
            wait_until_counted([worker], last_offsets, timeout=300)
        finally:
            worker.stop()
        assert_rollups_equal(db, events)
        assert outcomes(db)["counted"] == len(events)
    finally:
        broker.stop()


async def _wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
