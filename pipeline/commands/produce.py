"""``meterline produce [FILE]``: send your own events to the usage topic.

Input is JSON lines (a file, or stdin with ``-`` / no argument): each line is one event object or a batch
(a JSON array of events of one key). Every event is checked here with the same contract decoder and time
bounds the worker applies, so what is sent will be counted (a repeated ``request_id`` excepted) and what is
wrong is said at once, by line, with the worker's reason, instead of landing in the dead-letter topic.

What is sent is the normalised event (``schemas/usage-event.v1.schema.json``): a raw ``api_key`` secret is
replaced by its SHA-256 ``api_key_id`` here, so it never reaches Kafka. Each line becomes one message keyed
by its ``api_key_id``, so a key always lands on one partition.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline import clock
from pipeline.config import RollupSettings, load_settings
from pipeline.contract import ContractDecoder, UsageEvent, time_bounds_problem

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Kafka message: the normalised event, or a JSON array of a line's valid events of one key."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class LineProblem:
    """An event that is not sent: ``line`` is 1-based; ``index`` is its position in a batch line, or None."""

    line: int
    index: int | None
    reason: str
    detail: str


@dataclass
class Prepared:
    messages: list[Outgoing] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    events: int = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    produce = subparsers.add_parser("produce", help="send events (JSON lines from a file or stdin) to the usage topic")
    produce.add_argument("file", nargs="?", default="-", help="JSON-lines file; - or nothing for stdin")
    produce.set_defaults(handler=run_produce)


def run_produce(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    except OSError as error:
        print(f"meterline produce: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    with stream:
        prepared = prepare_lines(stream, ContractDecoder(settings.contract.max_batch_events), settings.rollup)
    for problem in prepared.problems:
        where = f"line {problem.line}" + (f", event {problem.index}" if problem.index is not None else "")
        print(f"{where}: {problem.reason}: {problem.detail}", file=sys.stderr)
    try:
        sent = asyncio.run(send(settings.kafka.brokers, settings.kafka.usage_topic, prepared.messages))
    except KafkaError as error:
        print(f"meterline produce: Kafka at {settings.kafka.brokers} refused the events: {error!r}; nothing "
              "is lost by sending the same file again (request ids are deduplicated)", file=sys.stderr)
        return 1
    print(f"sent {prepared.events} event(s) in {sent} message(s) to {settings.kafka.usage_topic} at "
          f"{settings.kafka.brokers}; {len(prepared.problems)} rejected", file=sys.stderr)
    return 1 if prepared.problems else 0


def prepare_lines(lines: Iterable[bytes], decoder: ContractDecoder, bounds: RollupSettings,
                  now_ms: int | None = None) -> Prepared:
    """Validate every line (bytes; blank lines are skipped) and build the messages of the valid events.

    An event is rejected with the contract's reasons, or ``too_late`` / ``future_timestamp`` against
    ``bounds`` at ``now_ms`` (epoch ms; default: now), exactly as the worker would dead-letter it.
    """
    now_ms = clock.now_ms() if now_ms is None else now_ms
    prepared = Prepared()
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if not value:
            continue
        events, rejections = decoder.decode(value)
        prepared.problems += [LineProblem(number, r.index, r.reason, r.detail) for r in rejections]
        kept = list(_within_bounds(events, number, bounds, now_ms, prepared.problems))
        prepared.messages += _messages(kept, batch=value[:1] == b"[")
        prepared.events += len(kept)
    prepared.problems.sort(key=lambda p: (p.line, -1 if p.index is None else p.index))
    return prepared


def _within_bounds(events: list[UsageEvent], line: int, bounds: RollupSettings, now_ms: int,
                   problems: list[LineProblem]) -> Iterator[UsageEvent]:
    lateness_ms, skew_ms = int(bounds.max_lateness_s * 1000), int(bounds.max_future_skew_s * 1000)
    for event in events:
        problem = time_bounds_problem(event.timestamp, now_ms, lateness_ms, skew_ms)
        if problem is None:
            yield event
        else:
            problems.append(LineProblem(line, None, *problem))


def _messages(events: list[UsageEvent], batch: bool) -> list[Outgoing]:
    """A line's valid events as messages: one event as itself; a batch as one array per api_key_id."""
    if not batch:
        return [Outgoing(event.api_key_id.encode(), _encode(event)) for event in events]
    by_key: dict[str, list[UsageEvent]] = {}
    for event in events:
        by_key.setdefault(event.api_key_id, []).append(event)
    return [Outgoing(key.encode(), _encode(group)) for key, group in by_key.items()]


async def send(brokers: str, topic: str, messages: list[Outgoing]) -> int:
    """Produce ``messages`` with acks=all and wait for every acknowledgement; returns how many were sent."""
    # No idempotent producer: the embedded Tansu broker refuses it, and a duplicate from a producer retry
    # is dropped by the worker's request_id deduplication anyway.
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=10)
    try:
        await producer.start()
        pending = [await producer.send(topic, message.value, key=message.key) for message in messages]
        for delivery in pending:
            await delivery
        return len(pending)
    finally:
        await producer.stop()
