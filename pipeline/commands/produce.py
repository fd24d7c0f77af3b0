"""``meterline produce [FILE]``: send your own events to the usage topic.

Input is JSON lines (a file, or stdin with ``-`` / no argument): each line is one event object or a batch
(a JSON array of events of one key). Each line becomes one Kafka message keyed by its ``api_key_id`` (for a
raw ``api_key`` secret, by the secret's hash, as the worker would store it), so a key always lands on one
partition. Lines are not validated here: the worker validates and dead-letters what is wrong, with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import IO, Iterator

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.config import load_settings
from pipeline.contract import hash_api_key


def register(subparsers: argparse._SubParsersAction) -> None:
    produce = subparsers.add_parser("produce", help="send events (JSON lines from a file or stdin) to the usage topic")
    produce.add_argument("file", nargs="?", default="-", help="JSON-lines file; - or nothing for stdin")
    produce.set_defaults(handler=run_produce)


def run_produce(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")
    except OSError as error:
        print(f"meterline: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        sent = asyncio.run(produce_lines(settings.kafka.brokers, settings.kafka.usage_topic, stream))
    except KafkaError as error:
        print(f"meterline: Kafka at {settings.kafka.brokers} failed: {error!r}; nothing after the failure was "
              "sent (sending the file again is safe: repeated request_ids are counted once)", file=sys.stderr)
        return 1
    except UnicodeDecodeError as error:
        print(f"meterline: {args.file} is not UTF-8 text ({error.reason} at byte {error.start}); lines before "
              "it were sent", file=sys.stderr)
        return 2
    finally:
        if stream is not sys.stdin:
            stream.close()
    print(f"sent {sent} message(s) to {settings.kafka.usage_topic} at {settings.kafka.brokers}", file=sys.stderr)
    return 0


async def produce_lines(brokers: str, topic: str, lines: IO[str]) -> int:
    # No idempotent producer: the embedded Tansu broker refuses it, and a duplicate from a producer retry
    # is dropped by the worker's request_id deduplication anyway.
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=10)
    try:
        await producer.start()
        pending = [await producer.send(topic, value, key=key) for key, value in keyed_messages(lines)]
        for delivery in pending:
            await delivery
        return len(pending)
    finally:
        await producer.stop()


def keyed_messages(lines: IO[str]) -> Iterator[tuple[bytes | None, bytes]]:
    for line in lines:
        value = line.strip().encode()
        if value:
            yield message_key(value), value


def message_key(value: bytes) -> bytes | None:
    """The api_key_id of the message's (first) event; None when it cannot be read (the worker rejects it)."""
    try:
        document = msgspec.json.decode(value)
    except msgspec.DecodeError:
        return None
    event = document[0] if isinstance(document, list) and document else document
    if not isinstance(event, dict):
        return None
    if isinstance(event.get("api_key_id"), str):
        return event["api_key_id"].encode()
    if isinstance(event.get("api_key"), str):
        return hash_api_key(event["api_key"]).encode()
    return None
