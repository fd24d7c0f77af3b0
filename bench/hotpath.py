"""CPU seconds of the write path's per-event Python work, without Kafka or ClickHouse: decode + validate +
bound + dedup + price + group (``RollupBuilder.draft``), ``Draft.finish`` and the sink's encoding
(``RollupWriter.encode``), over bench/workload.py events cut into flushes as a worker would see them.

    .venv/bin/python -m bench.hotpath [--events 300000] [--flush 20000] [--repeat 5] [--shape batch|single]

Prints one JSON line: CPU seconds (``time.process_time``, this process) of each repeat, for each shape. To
compare two versions of the code, run it alternately with each tree first on ``PYTHONPATH`` (paired runs:
``bench/hotpath.sh BEFORE_TREE AFTER_TREE``), so that machine load hits both alike. The garbage collector is tuned as the worker
tunes it (agents/app.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from bench.workload import batch_messages, generate, single_messages
from pipeline.contract import ContractDecoder
from pipeline.metering.dedup import SeenRequests
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.pricing import PriceBook
from pipeline.metering.rollup import RawMessage, RollupBuilder, TimeBounds
from pipeline.metering.sink import FlushRange, RollupWriter

DAY_MS = 86_400_000


def flushes(messages: list[tuple[bytes, bytes]], per_flush: int) -> list[list[RawMessage]]:
    raw = [RawMessage(offset, key, value) for offset, (key, value) in enumerate(messages)]
    return [raw[i:i + per_flush] for i in range(0, len(raw), per_flush)]


def run_once(chunks: list[list[RawMessage]], now_ms: int) -> float:
    """CPU seconds of draft + finish + encode over every chunk, with a fresh price book (cold caches, as a
    worker starts) and one dedup filter across the chunks (as one partition)."""
    builder = RollupBuilder(ContractDecoder(), PriceBook())
    writer = RollupWriter(None, "usage", 7 * 86400, Failpoints())  # type: ignore[arg-type]  # encode only
    seen = SeenRequests()
    bounds = TimeBounds(now_ms, 7 * DAY_MS, 300_000, DAY_MS)
    started = time.process_time()
    for chunk in chunks:
        draft = builder.draft(chunk, bounds, seen)
        rollup = draft.finish(set())
        writer.encode(FlushRange(0, chunk[0].offset, chunk[-1].offset, chunk[0].offset - 1), rollup)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--flush", type=int, default=20_000, help="events per flush")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shape", choices=("batch", "single"), default="batch")
    args = parser.parse_args()
    now_ms = time.time_ns() // 1_000_000
    workload = generate(args.events, now_ms)
    if args.shape == "batch":
        messages = batch_messages(workload)
        per_flush = max(1, args.flush * len(messages) // args.events)
    else:
        messages, per_flush = single_messages(workload), args.flush
    chunks = flushes(messages, per_flush)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    seconds = [run_once(chunks, now_ms) for _ in range(args.repeat)]
    print(json.dumps({"shape": args.shape, "events": args.events, "flushes": len(chunks), "cpu_s": seconds}))


if __name__ == "__main__":
    main()
