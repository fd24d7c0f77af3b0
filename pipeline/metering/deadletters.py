"""What a dead letter looks like on ``meterline.usage.v1.dlq``: the offending bytes plus headers that say why
and where they came from.

A dead letter must always fit the dead-letter topic, or one huge bad message would make every send fail
and stop the worker. The record value is the original bytes (secrets hashed) up to
:data:`MAX_VALUE_BYTES`; a longer value keeps its first bytes and says so in ``meterline.truncated`` and
``meterline.original_bytes``. Kafka's default ``max.message.bytes`` and the Faust producer's default
``max_request_size`` are both about 1 MB, so anything that arrived on a default usage topic is kept whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.contract import Rejection

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
