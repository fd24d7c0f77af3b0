"""The local brokers really work: Apache Kafka from deploy/kafka/kafka.sh, and the tansu binary."""

from __future__ import annotations

import asyncio
import subprocess
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from pipeline.devtools.brokers import KAFKA_SH, ApacheKafka, BrokerError, TansuBroker
from pipeline.kafka import create_topics

pytestmark = pytest.mark.kafka


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], idempotent: bool
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotent
    )
    try:
        await producer.start()
        sent = [await producer.send(topic, value=value, key=key) for key, value in messages]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[ConsumerRecord] = []
    try:
        await consumer.start()
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def assert_round_trip(
    bootstrap: str, topic: str, partitions: int, idempotent: bool = True
) -> None:
    messages = [(f"key-{i % 16}".encode(), f"{i}".encode()) for i in range(400)]
    await produce(bootstrap, topic, messages, idempotent)
    records = await consume(bootstrap, topic, len(messages))

    assert sorted((r.key, r.value) for r in records) == sorted(messages)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    values_of_key: dict[bytes, list[int]] = defaultdict(list)
    for r in records:
        partitions_of_key[r.key].add(r.partition)
        values_of_key[r.key].append(int(r.value))
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key was split over partitions"
    assert all(v == sorted(v) for v in values_of_key.values()), "a key's messages were reordered"
    assert {r.partition for r in records} == set(range(partitions))


async def test_keyed_round_trip_on_apache_kafka(
    kafka_bootstrap: str, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(partitions=4)
    await assert_round_trip(kafka_bootstrap, topic, partitions=4)


def test_status_reports_the_running_broker(kafka_broker: ApacheKafka) -> None:
    done = subprocess.run(
        [str(KAFKA_SH), "status", str(kafka_broker.state_dir)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == kafka_broker.bootstrap
    assert (kafka_broker.state_dir / "broker.env").read_text() == f"BOOTSTRAP={kafka_broker.bootstrap}\n"


async def test_keyed_round_trip_on_tansu(tmp_path: Path) -> None:
    with TansuBroker(tmp_path) as broker:
        await create_topics(broker.bootstrap, {"usage": 4})
        # tansu 0.6.0 answers InitProducerId with an error: no idempotent producer there.
        await assert_round_trip(broker.bootstrap, "usage", partitions=4, idempotent=False)


def test_stop_is_idempotent_and_a_restart_keeps_the_address(tmp_path: Path) -> None:
    def status() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KAFKA_SH), "status", str(tmp_path)], capture_output=True, text=True)

    broker = ApacheKafka(tmp_path)
    first = broker.start()
    with pytest.raises(BrokerError, match="already runs"):
        ApacheKafka(tmp_path).start()
    broker.stop()
    broker.stop()
    assert status().returncode == 1

    assert broker.start() == first
    assert status().stdout.strip() == first
    broker.stop()
    broker.stop()
    assert status().returncode == 1
    assert not (tmp_path / "broker.pid").exists()
