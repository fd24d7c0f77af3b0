"""Messages consumed from Kafka and not yet flushed, per partition, in offset order."""

from __future__ import annotations

import asyncio

from pipeline.metering.rollup import RawMessage

# What a buffered message costs beyond its value: the RawMessage object and its list slot.
_OVERHEAD_BYTES = 120


class PartitionBuffers:
    """The agent appends, the flusher takes. ``add`` is synchronous and cheap: it runs once per message."""

    def __init__(self, flush_at_bytes: int, max_bytes: int) -> None:
        self._flush_at_bytes = flush_at_bytes
        self._max_bytes = max_bytes
        self._messages: dict[int, list[RawMessage]] = {}
        self._last_offset: dict[int, int] = {}
        self._accepting: set[int] = set()  # partitions assigned and positioned; others' messages are stale
        self._bytes = 0
        self.flush_wanted = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    def accept(self, partitions: set[int]) -> None:
        """Buffer only these partitions from now on (the ones assigned and positioned)."""
        self._accepting = set(partitions)

    def add(self, partition: int, offset: int, key: bytes | None, value: bytes | None, timestamp_ms: int = 0) -> None:
        """Buffer one record; ``value`` None is a tombstone (the flush dead-letters it); ``timestamp_ms`` is the
        Kafka record's timestamp (freshness)."""
        if partition not in self._accepting:
            return  # delivered after a revocation: the next owner (or this worker, re-positioned) reads it
        if offset <= self._last_offset.get(partition, -1):
            return  # a repeat delivery: the flush already has (or had) this offset
        self._last_offset[partition] = offset
        self._messages.setdefault(partition, []).append(RawMessage(offset, key, value, timestamp_ms))
        self._bytes += (len(value) if value is not None else 0) + _OVERHEAD_BYTES
        if self._bytes >= self._flush_at_bytes:
            self.flush_wanted.set()
        if self._bytes >= self._max_bytes:
            self._room.clear()

    def add_records(self, partition: int, records) -> None:
        """Buffer one fetch's records of ``partition`` (aiokafka ``ConsumerRecord``s, in offset order)."""
        if partition not in self._accepting:
            return  # fetched before a revocation: the next owner (or this worker, re-positioned) reads them
        last = self._last_offset.get(partition, -1)
        fresh = [RawMessage(r.offset, r.key, r.value, r.timestamp or 0) for r in records if r.offset > last]
        if not fresh:
            return
        self._last_offset[partition] = fresh[-1].offset
        self._messages.setdefault(partition, []).extend(fresh)
        self._bytes += sum(len(m.value) for m in fresh if m.value is not None) + _OVERHEAD_BYTES * len(fresh)
        if self._bytes >= self._flush_at_bytes:
            self.flush_wanted.set()
        if self._bytes >= self._max_bytes:
            self._room.clear()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    def take(self) -> dict[int, list[RawMessage]]:
        """All buffered messages, emptying the buffer (offsets already seen stay remembered)."""
        taken, self._messages = self._messages, {}
        self._bytes = 0
        self.flush_wanted.clear()
        self._room.set()
        return taken

    def reset(self) -> None:
        """Forgets everything buffered and seen, e.g. before a rebalance re-positions the consumer."""
        self._messages.clear()
        self._last_offset.clear()
        self._bytes = 0
        self.flush_wanted.clear()
        self._room.set()
