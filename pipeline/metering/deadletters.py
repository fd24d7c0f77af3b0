"""Dead letters: what a rejected message looks like on ``meterline.usage.v1.dlq`` (the offending bytes plus
headers that say why and where they came from), and the producer that sends a flush's dead letters before
the flush is written.

A dead letter must always fit the dead-letter topic, or one huge bad message would make every send fail
and stop the worker. The record value is the original bytes (secrets hashed) up to
:data:`MAX_VALUE_BYTES`; a longer value keeps its first bytes and says so in ``meterline.truncated`` and
``meterline.original_bytes``. Kafka's default ``max.message.bytes`` and the Faust producer's default
``max_request_size`` are both about 1 MB, so anything that arrived on a default usage topic is kept whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.contract import Rejection
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.rollup import DeadLetter
from pipeline.metrics import PipelineMetrics
from pipeline.retry import Backoff, retry

log = logging.getLogger(__name__)
# (topic, value, headers) -> a future of Kafka's acknowledgement (the shape of Faust's producer.send).
RecordSend = Callable[[str, bytes, list[tuple[str, bytes]]], Awaitable[Awaitable[Any]]]

# Below the producer's default max_request_size (1,000,000 bytes) with room for the headers (the detail is
# at most DETAIL_LIMIT bytes) and the record batch overhead.
MAX_VALUE_BYTES = 990_000
DETAIL_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One record for the dead-letter topic: ``value`` and Kafka headers as (name, bytes) pairs."""

    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter_record(rejection: Rejection, source_topic: str, partition: int, offset: int) -> DeadLetterRecord:
    """The record that dead-letters ``rejection`` of the message at ``source_topic``/``partition``/``offset``.

    Headers: ``meterline.reason``, ``meterline.detail`` (at most DETAIL_LIMIT bytes of UTF-8),
    ``meterline.source.{topic,partition,offset}``, ``meterline.source.index`` for one event of a batch, and
    ``meterline.truncated`` / ``meterline.original_bytes`` when the value was cut to MAX_VALUE_BYTES.
    """
    headers = [
        ("meterline.reason", rejection.reason.encode()),
        ("meterline.detail", _utf8_prefix(rejection.detail, DETAIL_LIMIT)),
        ("meterline.source.topic", source_topic.encode()),
        ("meterline.source.partition", str(partition).encode()),
        ("meterline.source.offset", str(offset).encode()),
    ]
    if rejection.index is not None:
        headers.append(("meterline.source.index", str(rejection.index).encode()))
    value = rejection.raw
    if len(value) > MAX_VALUE_BYTES:
        headers += [("meterline.truncated", b"true"), ("meterline.original_bytes", str(len(value)).encode())]
        value = value[:MAX_VALUE_BYTES]
    return DeadLetterRecord(value, headers)


def _utf8_prefix(text: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``text`` as UTF-8, never cutting a character in two (nor failing on a lone
    surrogate, which is replaced)."""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore").encode()


class DeadLetterProducer:
    """Sends one flush's dead letters and waits until Kafka has acknowledged every one.

    A failed send is retried with backoff until it succeeds: the flush that rejected these events waits,
    so no dead letter is ever skipped (a broker outage only delays metering). A crash after the sends and
    before the flush commits sends them again after the restart: dead letters are at-least-once, each one
    identified by its ``meterline.source.*`` headers (docs/exactly-once.md).
    """

    def __init__(self, send: RecordSend, dlq_topic: str, source_topic: str, metrics: PipelineMetrics,
                 failpoints: Failpoints, backoff: Backoff = Backoff()) -> None:
        self._send = send
        self._dlq_topic = dlq_topic
        self._source_topic = source_topic
        self._metrics = metrics
        self._failpoints = failpoints
        self._backoff = backoff

    async def send(self, partition: int, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return

        def failed(error: Exception, attempt: int, delay_s: float) -> None:
            self._metrics.dead_letter_errors.inc()
            log.warning("dead-letter send failed (%s); retrying in %.1fs", error, delay_s)

        await retry(lambda: self._send_all(partition, letters), self._backoff, on_failure=failed)
        self._failpoints.hit("after_dead_letters")

    async def _send_all(self, partition: int, letters: Sequence[DeadLetter]) -> None:
        acknowledgements = []
        for letter in letters:
            record = dead_letter_record(letter.rejection, self._source_topic, partition, letter.offset)
            acknowledgements.append(await self._send(self._dlq_topic, record.value, record.headers))
        await asyncio.gather(*acknowledgements)
