"""No message can stop metering, on a real broker: the whole hostile corpus (tests/data/hostile), a tombstone,
records with headers and batches in every Kafka compression codec go through one running worker. It survives
all of them, counts the good events exactly, and dead-letters each bad one exactly once with its reason.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.metering.deadletters import MAX_VALUE_BYTES
from support.corpus import hostile_cases
from support.dlq import dead_letters
from support.processes import WorkerProcess, read_clickhouse, wait_until_counted

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

BIG = 16 * 1024 * 1024  # the usage topic takes the corpus' 10 MB messages (Kafka's default is ~1 MB)
KEY = b"key-hostile"


async def create_big_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1, topic_configs={"max.message.bytes": str(BIG)})])
    finally:
        await admin.close()


def good_event(request_id: str, now_ms: int) -> bytes:
    return json.dumps({"request_id": request_id, "api_key_id": KEY.decode(), "model": "gpt-4o-mini",
                       "timestamp": now_ms, "input_tokens": 10, "output_tokens": 5}).encode()


async def send(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list]],
               compression: str | None = None) -> list[tuple[int, int]]:
    """(partition, offset) of each (key, value, headers) record, sent in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=BIG,
                                compression_type=compression)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in records]
        return [((meta := await future).partition, meta.offset) for future in futures]
    finally:
        await producer.stop()


async def test_a_worker_survives_the_hostile_corpus_and_counts_the_rest_exactly(kafka_bootstrap, tmp_path):
    topic = f"t-hostile-{uuid4().hex[:8]}"
    await create_big_topic(kafka_bootstrap, topic)
    now_ms = time.time_ns() // 1_000_000
    cases = hostile_cases(now_ms)
    counted = sum(case.counted for case in cases)
    expected_letters: Counter = Counter()
    last: dict[int, int] = {}

    def place(where: list[tuple[int, int]], rejections) -> None:
        for (partition, offset), rejected in zip(where, rejections):
            last[partition] = max(offset, last.get(partition, -1))
            expected_letters.update((partition, offset, index, reason) for index, reason in rejected)

    place(await send(kafka_bootstrap, topic, [(case.key, case.value, []) for case in cases]),
          [case.rejections for case in cases])
    # A tombstone, a record without a key, and one with headers: legal records any producer can write.
    place(await send(kafka_bootstrap, topic, [(KEY, None, []), (None, good_event("h-no-key", now_ms), []),
                                              (KEY, good_event("h-headers", now_ms), [("trace", b"\xff\x00")])]),
          [[(None, "tombstone")], [], []])
    counted += 2
    for codec in ("gzip", "snappy", "lz4", "zstd"):  # what gateways' producers commonly compress with
        records = [(KEY, good_event(f"h-{codec}-{i}", now_ms), []) for i in range(3)]
        place(await send(kafka_bootstrap, topic, records, compression=codec), [[]] * 3)
        counted += 3

    url = f"chdb://{tmp_path / 'clickhouse'}"
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}").start()
    try:
        wait_until_counted([worker], last, timeout=180)
        assert worker.alive
        rejected = sum(expected_letters.values())
        assert worker.metric("meterline_events_rejected_total") == rejected
        assert worker.metric("meterline_events_counted_total") == counted
        health = worker.status()
        assert health is not None and health["positioned"]
    finally:
        worker.stop()
    [(requests, input_tokens, output_tokens)] = read_clickhouse(
        url, "SELECT sum(requests), sum(input_tokens), sum(output_tokens) FROM usage_hourly")
    # every good event has 10 input and 5 output tokens, except "negative-zero-tokens" (output -0, i.e. 0)
    assert (requests, input_tokens, output_tokens) == (counted, 10 * counted, 5 * counted - 5)
    outcomes = Counter({reason: int(n) for reason, n in read_clickhouse(
        url, "SELECT reason, sum(events) FROM ingest_outcomes WHERE outcome = 'rejected' GROUP BY reason")})
    assert outcomes == Counter(reason for (_, _, _, reason), n in expected_letters.items() for _ in range(n))

    letters = await dead_letters(kafka_bootstrap, f"{topic}.dlq")
    assert Counter(letter[:4] for letter in letters) == expected_letters  # each exactly once, with its reason
    assert not any(b"sk-live-HOSTILE-SECRET" in letter.value for letter in letters)
    # the 10 MB message is dead-lettered as its first bytes, saying how long it was
    [huge] = [case for case in cases if case.name == "ten-megabyte-model"]
    [truncated] = [letter for letter in letters if "meterline.truncated" in letter.headers]
    assert truncated.reason == "invalid_field" and truncated.value == huge.value[:MAX_VALUE_BYTES]
    assert truncated.headers["meterline.original_bytes"] == str(len(huge.value)).encode()
