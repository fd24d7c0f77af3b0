"""Messages consumed from Kafka and not yet flushed, per partition, in offset order."""

from __future__ import annotations

import asyncio

from pipeline.rollup import RawMessage

# What a buffered message costs beyond its value: the RawMessage object and its list slot.
_OVERHEAD_BYTES = 120


class PartitionBuffers:
    """The agent appends, the flusher takes. ``add`` is synchronous and cheap: it runs once per message."""

    def __init__(self, flush_at_bytes: int, max_bytes: int) -> None:
        self._flush_at_bytes = flush_at_bytes
        self._max_bytes = max_bytes
        self._messages: dict[int, list[RawMessage]] = {}
        self._last_offset: dict[int, int] = {}
        self._rewinding: dict[int, int] = {}
        self._bytes = 0
        self.flush_wanted = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return not self._room.is_set()

    def add(self, partition: int, offset: int, key: bytes | None, value: bytes) -> None:
        rewound_from = self._rewinding.get(partition)
        if rewound_from is not None:
            if offset > rewound_from:
                return  # fetched before the rewinding seek: the re-read brings it again
            del self._rewinding[partition]  # the re-read has begun
        elif offset <= self._last_offset.get(partition, -1):
            return  # a repeat delivery: the flush already has (or had) this offset
        self._last_offset[partition] = offset
        self._messages.setdefault(partition, []).append(RawMessage(offset, key, value))
        self._bytes += len(value) + _OVERHEAD_BYTES
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

    def reset(self, partitions: list[int] | None = None) -> None:
        """Forgets partitions entirely, e.g. after a rebalance re-positions the consumer."""
        everything = set(self._last_offset) | set(self._rewinding) | set(self._messages)
        for partition in everything if partitions is None else partitions:
            dropped = self._messages.pop(partition, [])
            self._bytes -= sum(len(m.value) + _OVERHEAD_BYTES for m in dropped)
            self._last_offset.pop(partition, None)
            self._rewinding.pop(partition, None)
        if self._bytes < self._max_bytes:
            self._room.set()

    def rewind(self, partition: int) -> None:
        """The consumer was sought back: ignore what was fetched before the seek (offsets above the last one
        seen) until the re-read arrives, recognisable by an offset at or below it."""
        last = self._last_offset.get(partition)
        self.reset([partition])
        if last is not None:
            self._rewinding[partition] = last
