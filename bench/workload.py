"""Realistic synthetic gateway traffic for the benchmark, and a fast producer.

10,000 keys with a Zipf-like skew, 20 models, ~200-byte JSON events, 1% retries (duplicates), 0.1%
malformed and 1% late events. The same events are produced in two shapes: one event per message, and
per-key batches of up to 100 events per message.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

MODELS = [
    ("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("gpt-4.1", "openai"), ("gpt-4.1-mini", "openai"),
    ("o3-mini", "openai"), ("o4-mini", "openai"), ("claude-sonnet-4-5", "anthropic"),
    ("claude-3-5-haiku-latest", "anthropic"), ("claude-opus-4-1", "anthropic"), ("gemini-2.5-pro", "google"),
    ("gemini-2.5-flash", "google"), ("gemini-2.0-flash", "google"), ("mistral-large-latest", "mistral"),
    ("mistral-small-latest", "mistral"), ("deepseek-chat", "deepseek"), ("deepseek-reasoner", "deepseek"),
    ("command-r-plus", "cohere"), ("llama-3.3-70b-versatile", "groq"), ("grok-3", "x-ai"),
    ("internal-finetune-v2", "acme"),
]
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Workload:
    events: list[bytes]  # encoded events in production order
    keys: list[str]  # api_key_id of each event
    malformed: int


def generate(n: int, now_ms: int, keys: int = 10_000, seed: int = 7) -> Workload:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(keys)]
    key_names = [f"key_{i:05d}" for i in range(keys)]
    chosen = rng.choices(key_names, weights, k=n)
    encode = msgspec.json.encode
    history: dict[str, list[bytes]] = defaultdict(list)
    events, malformed = [], 0
    for i, key in enumerate(chosen):
        roll = rng.random()
        if roll < 0.01 and history[key]:
            events.append(rng.choice(history[key]))
            continue
        model, provider = MODELS[i % len(MODELS)]
        age = rng.randint(2 * 24 * HOUR_MS, 3 * 24 * HOUR_MS) if roll < 0.02 else rng.randint(0, 2 * HOUR_MS)
        input_tokens = rng.randint(50, 4000)
        event = {"request_id": f"req-{seed}-{i:09d}", "api_key_id": key, "model": model, "provider": provider,
                 "timestamp": now_ms - age, "input_tokens": input_tokens, "output_tokens": rng.randint(1, 1200),
                 "cache_read_tokens": input_tokens // 4, "status": "ok"}
        if roll > 0.999:
            event["input_tokens"] = -1
            malformed += 1
        data = encode(event)
        events.append(data)
        history[key].append(data)
    return Workload(events, chosen, malformed)


def single_messages(workload: Workload) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), event) for key, event in zip(workload.keys, workload.events)]


def batch_messages(workload: Workload, size: int = 100) -> list[tuple[bytes, bytes]]:
    """Per-key batches of up to ``size`` events, emitted when full or at the end (a gateway's buffers)."""
    open_batches: dict[str, list[bytes]] = defaultdict(list)
    messages = []
    for key, event in zip(workload.keys, workload.events):
        batch = open_batches[key]
        batch.append(event)
        if len(batch) == size:
            messages.append((key.encode(), b"[" + b",".join(batch) + b"]"))
            open_batches[key] = []
    messages += [(key.encode(), b"[" + b",".join(b) + b"]") for key, b in open_batches.items() if b]
    return messages


async def produce_fast(bootstrap: str, topic: str, partitions: int, messages: list[tuple[bytes, bytes]]) -> float:
    """Produces keyed messages with the Java client's partitioner, in record batches; returns seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    started = time.perf_counter()
    try:
        partition_of: dict[bytes, int] = {}
        batches = {p: producer.create_batch() for p in range(partitions)}
        pending = []
        for key, value in messages:
            p = partition_of.get(key)
            if p is None:
                p = partition_of[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
            if batches[p].append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batches[p], topic, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=key, value=value, timestamp=None)
        for p, batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=p))
        for future in pending:
            await future
        return time.perf_counter() - started
    finally:
        await producer.stop()
