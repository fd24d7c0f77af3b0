"""End-to-end latency at a fixed offered load: from the producer's ack to the offset being committed in
ClickHouse (the flush's single insert makes its usage rows visible to usage_hourly at that moment)."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2


async def measure_latency(bootstrap: str, topic: str, partitions: int, worker, rate: int, seconds: int) -> dict:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    acked: list[tuple[int, int, float]] = []  # (partition, offset, ack time)
    rng = random.Random(5)
    batch_events = 100
    interval = batch_events / rate
    try:
        poller = asyncio.create_task(_poll_progress(worker, acked))
        started = time.perf_counter()
        for i in range(int(seconds * rate / batch_events)):
            key = f"key_{rng.randrange(2000):05d}".encode()
            now = time.time_ns() // 1_000_000
            batch = [{"request_id": f"lat-{i}-{j}", "api_key_id": key.decode(), "model": "gpt-4o-mini",
                      "provider": "openai", "timestamp": now, "input_tokens": 500, "output_tokens": 100}
                     for j in range(batch_events)]
            partition = (murmur2(key) & 0x7FFFFFFF) % partitions
            meta = await (await producer.send(topic, msgspec.json.encode(batch), key=key, partition=partition))
            acked.append((meta.partition, meta.offset, time.perf_counter()))
            delay = started + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        latencies = await poller
    finally:
        await producer.stop()
    latencies.sort()
    return {"offered_events_per_s": rate, "samples": len(latencies),
            "p50_s": statistics.median(latencies), "p99_s": latencies[int(len(latencies) * 0.99) - 1],
            "max_s": latencies[-1]}


async def _poll_progress(worker, acked: list, poll_s: float = 0.02) -> list[float]:
    """Latency of every acked message: the first poll at which its partition's progress covers it."""
    latencies: list[float] = []
    done = 0
    idle_since = None
    while True:
        status = worker.status() or {"partitions": {}}
        seen_at = time.perf_counter()
        progress = {int(p): o for p, o in status["partitions"].items()}
        while done < len(acked) and progress.get(acked[done][0], -1) >= acked[done][1]:
            latencies.append(seen_at - acked[done][2])
            done += 1
        # messages of other partitions may be committed out of order: scan the pending ones too
        pending = [(p, o, t) for p, o, t in acked[done:]]
        acked[done:] = [(p, o, t) for p, o, t in pending if progress.get(p, -1) < o]
        latencies += [seen_at - t for p, o, t in pending if progress.get(p, -1) >= o]
        if done == len(acked) and acked:
            idle_since = idle_since or seen_at
            if seen_at - idle_since > 3:
                return latencies
        else:
            idle_since = None
        await asyncio.sleep(poll_s)
