"""Reading a dead-letter topic back, whole, for tests."""

from __future__ import annotations

from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


class DeadLetterRead(NamedTuple):
    """One dead-letter record: where its source message was, why, its value and every header."""

    partition: int  # of the source message
    offset: int
    index: int | None  # the event's position in a batch; None for a whole message
    reason: str
    value: bytes
    headers: dict[str, bytes]


async def dead_letters(bootstrap: str, topic: str) -> list[DeadLetterRead]:
    """Every record of the dead-letter ``topic``, in partition order."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    records = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    out = []
    for record in records:
        headers = dict(record.headers)
        index = headers.get("meterline.source.index")
        out.append(DeadLetterRead(int(headers["meterline.source.partition"]), int(headers["meterline.source.offset"]),
                                  None if index is None else int(index), headers["meterline.reason"].decode(),
                                  record.value, headers))
    return out
