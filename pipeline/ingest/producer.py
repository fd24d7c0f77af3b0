"""Sending batch messages to the usage topic with aiokafka, fast and on the right partition.

``send()`` per keyed message is slow (aiokafka's partitioner hashes in pure Python, ~36k messages/s); a
``BatchBuilder`` per partition submitted with ``send_batch`` is an order of magnitude faster. The partition
is then ours to choose, and it must be exactly the one Kafka's default partitioner picks for the key
(murmur2, positive, modulo the partition count), because the worker deduplicates per partition: a gateway's
retry, sent through any path, must land where the first attempt did.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

# Kafka's default broker limit (message.max.bytes) is 1 MiB per record batch; stay below it.
MAX_BATCH_BYTES = 1_000_000
_HASH_CACHE_LIMIT = 100_000


@dataclass(eq=False)
class OutgoingMessage:
    """One Kafka message: a contract batch (JSON array) of events sharing ``key`` (the api_key_id)."""

    key: bytes
    events: list[bytes]
    size: int  # bytes of the value once joined
    acked: asyncio.Future = field(repr=False)

    def value(self) -> bytes:
        return b"[" + b",".join(self.events) + b"]"


def kafka_partition(key: bytes, partitions: int, hashes: dict[bytes, int] | None = None) -> int:
    """The partition Kafka's default partitioner (Java client and aiokafka alike) picks for ``key``."""
    digest = None if hashes is None else hashes.get(key)
    if digest is None:
        digest = murmur2(key) & 0x7FFFFFFF
        if hashes is not None:
            if len(hashes) >= _HASH_CACHE_LIMIT:
                hashes.clear()
            hashes[key] = digest
    return digest % partitions


class BatchSender:
    """Puts messages on ``topic`` in per-partition record batches and resolves each message's ``acked``
    future when Kafka acknowledges it (acks=all) or with the error that stopped it."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._hashes: dict[bytes, int] = {}

    async def send(self, messages: Sequence[OutgoingMessage]) -> None:
        try:
            # Read at every send: a topic whose partitions were added is followed as the producer sees it.
            count = len(await self._producer.partitions_for(self._topic))
        except Exception as error:  # noqa: BLE001 - whatever stops us is handed to the waiting requests
            _settle(messages, error)
            return
        by_partition: dict[int, list[OutgoingMessage]] = defaultdict(list)
        for message in messages:
            by_partition[kafka_partition(message.key, count, self._hashes)].append(message)
        # Partitions are independent; within one, aiokafka queues a batch behind the previous one.
        await asyncio.gather(*(self._send_partition(p, group) for p, group in by_partition.items()))

    async def _send_partition(self, partition: int, messages: list[OutgoingMessage]) -> None:
        builder, members = self._producer.create_batch(), []
        for message in messages:
            value = message.value()
            if builder.append(key=message.key, value=value, timestamp=None) is None:  # the batch is full
                await self._submit(builder, partition, members)
                builder, members = self._producer.create_batch(), []
                builder.append(key=message.key, value=value, timestamp=None)  # a first record always fits
            members.append(message)
        await self._submit(builder, partition, members)

    async def _submit(self, builder, partition: int, members: list[OutgoingMessage]) -> None:
        try:
            delivery = await self._producer.send_batch(builder, self._topic, partition=partition)
        except Exception as error:  # noqa: BLE001
            _settle(members, error)
            return
        delivery.add_done_callback(lambda done: _settle(members, _error_of(done)))


def _error_of(done: asyncio.Future) -> BaseException | None:
    if done.cancelled():
        return RuntimeError("the Kafka delivery was cancelled")
    return done.exception()


def _settle(messages: Sequence[OutgoingMessage], error: BaseException | None) -> None:
    for message in messages:
        if message.acked.done():
            continue
        if error is None:
            message.acked.set_result(None)
        else:
            message.acked.set_exception(error)


def new_producer(bootstrap: str, request_timeout_s: float, idempotence: bool = True) -> AIOKafkaProducer:
    """An acks=all producer whose record batches can hold a whole contract batch message.

    ``idempotence`` (KIP-98: producer id + sequence numbers, started with InitProducerId) lets the broker drop
    a batch the producer re-sends after a lost acknowledgement. Without it such a retry can write the
    message twice; the worker then drops the repeated request_ids (docs/ingest.md, "Durability")."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotence, linger_ms=0,
        max_batch_size=MAX_BATCH_BYTES, max_request_size=1_048_576,  # Kafka's default max.request.size
        request_timeout_ms=int(request_timeout_s * 1000))
