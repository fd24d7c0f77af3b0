"""Grouping accepted events into contract batch messages per ``api_key_id``, across concurrent requests.

Every event joins the open message of its key; a message closes at the contract's batch size or at
``max_message_bytes``. All messages go to Kafka together after a short linger (the first event starts the
clock) or as soon as about one Kafka batch worth of bytes is waiting. Each ``add`` returns the future of
the message holding the event: it resolves when Kafka has acknowledged that message, or fails with the
reason it could not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pipeline.ingest.producer import MAX_BATCH_BYTES, OutgoingMessage

Send = Callable[[list[OutgoingMessage]], Awaitable[None]]


class KeyedBatcher:
    def __init__(self, send: Send, max_events: int, linger_s: float,
                 max_message_bytes: int = MAX_BATCH_BYTES // 2, flush_bytes: int = MAX_BATCH_BYTES,
                 on_message: Callable[[int], None] = lambda events: None) -> None:
        self._send = send
        self._max_events = max_events
        self._linger_s = linger_s
        self._max_message_bytes = max_message_bytes
        self._flush_bytes = flush_bytes
        self._on_message = on_message  # told the event count of every message handed to Kafka
        self._open: dict[str, OutgoingMessage] = {}
        self._closed: list[OutgoingMessage] = []
        self._buffered_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task] = set()
        self._unacked = 0

    @property
    def unacked(self) -> int:
        """Events accepted and not yet settled (acknowledged or failed): the collector's backlog."""
        return self._unacked

    def add(self, key: str, event: bytes) -> asyncio.Future:
        message = self._open.get(key)
        if message is not None and not self._fits(message, event):
            self._closed.append(self._open.pop(key))
            message = None
        if message is None:
            message = self._open[key] = self._new_message(key)
        message.events.append(event)
        message.size += len(event) + 1
        self._unacked += 1
        self._buffered_bytes += len(event) + 1
        if self._buffered_bytes >= self._flush_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self.flush)
        return message.acked

    def flush(self) -> None:
        """Hand every waiting message to Kafka now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        messages = self._closed + list(self._open.values())
        self._closed, self._open, self._buffered_bytes = [], {}, 0
        if not messages:
            return
        for message in messages:
            self._on_message(len(message.events))
        task = asyncio.get_running_loop().create_task(self._send_or_fail(messages))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Flush and wait until every message has been handed to the producer."""
        self.flush()
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _fits(self, message: OutgoingMessage, event: bytes) -> bool:
        return len(message.events) < self._max_events and message.size + len(event) + 1 <= self._max_message_bytes

    def _new_message(self, key: str) -> OutgoingMessage:
        acked = asyncio.get_running_loop().create_future()
        message = OutgoingMessage(key.encode(), [], 1, acked)
        acked.add_done_callback(lambda done: self._settled(message, done))
        return message

    def _settled(self, message: OutgoingMessage, done: asyncio.Future) -> None:
        self._unacked -= len(message.events)
        if not done.cancelled():
            done.exception()  # retrieved here: a request that timed out may never look at it

    async def _send_or_fail(self, messages: list[OutgoingMessage]) -> None:
        try:
            await self._send(messages)
        except Exception as error:  # noqa: BLE001 - a bug in sending must still release the requests
            for message in messages:
                if not message.acked.done():
                    message.acked.set_exception(error)
