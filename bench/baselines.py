"""The baselines every worker number is divided by: A (plain aiokafka + json), B (an empty Faust agent) and Q
(quix-streams, in its own virtualenv: see bench/quix_baseline.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]


async def aiokafka_decode_rate(bootstrap: str, topic: str, partitions: int, n_messages: int) -> dict:
    """Baseline A: a plain aiokafka consumer reading every message and JSON-decoding it (stdlib json)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    messages = events = 0
    started = None
    loads = json.loads
    try:
        while messages < n_messages:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batches:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    decoded = loads(record.value)
                    events += len(decoded) if isinstance(decoded, list) else 1
                messages += len(records)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"seconds": elapsed, "messages_per_s": messages / elapsed, "events_per_s": events / elapsed}


def quix_rate(python: Path, bootstrap: str, topic: str, n_events: int, mode: str) -> dict:
    """Baseline Q: quix-streams (``mode`` window or dict) in its own process, from the first message until
    every event has been through its pipeline."""
    result = subprocess.run([str(python), "-m", "bench.quix_baseline", bootstrap, topic, str(n_events), mode],
                            cwd=ROOT, capture_output=True, text=True, timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"quix-streams baseline ({mode}) failed:\n{result.stderr[-3000:]}")
    measured = json.loads(lines[-1])
    return {"seconds": measured["seconds"], "events_per_s": measured["events"] / measured["seconds"]}


def faust_iterate_rate(bootstrap: str, topic: str, n_messages: int) -> dict:
    """Baseline B: an empty Faust agent iterating the topic, in its own process (as a worker would be)."""
    result = subprocess.run([sys.executable, "-m", "bench.faust_baseline", bootstrap, topic, str(n_messages)],
                            cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"Faust baseline failed:\n{result.stderr[-3000:]}")
    measured = json.loads(lines[-1])
    return {"seconds": measured["seconds"], "messages_per_s": measured["messages"] / measured["seconds"]}
