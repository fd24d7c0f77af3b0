"""Collector throughput over HTTP: events/s from POST to Kafka's acknowledgement (each 200 means acked).

    .venv/bin/python bench/collector.py                      # starts a throwaway Apache Kafka broker
    .venv/bin/python bench/collector.py --bootstrap HOST:PORT --events 500000 --clients 32 --per-request 1000

The collector runs as ``meterline collect`` in its own process; the clients run in ``--client-procs``
processes (asyncio, one keep-alive connection per client) with bodies encoded before the clock starts, so
what is timed is the collector (plus Kafka), not the load generator's JSON encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.devtools.brokers import ApacheKafka, free_port, run_blocking  # noqa: E402
from pipeline.kafka import create_topics  # noqa: E402

TOKEN = "bench-token"


def bodies(n_events: int, per_request: int, keys: int, ndjson: bool, offset: int) -> list[bytes]:
    now = time.time_ns() // 1_000_000
    events = [{"request_id": f"bench-{offset + i}", "api_key_id": f"key-{(offset + i) % keys:03d}",
               "model": "gpt-4o-mini", "provider": "openai", "timestamp": now - (i % 3_600_000),
               "input_tokens": 1200 + i % 500, "output_tokens": 300 + i % 200, "cache_read_tokens": 512,
               "org_id": "org-bench"} for i in range(n_events)]
    chunks = [events[i:i + per_request] for i in range(0, n_events, per_request)]
    if ndjson:
        return ["\n".join(map(json.dumps, c)).encode() for c in chunks]
    return [json.dumps(c).encode() for c in chunks]


async def _client(url: str, work: list[bytes], ndjson: bool, latencies: list[float]) -> None:
    content_type = "application/x-ndjson" if ndjson else "application/json"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for body in work:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {answer[:200]!r}")
            latencies.append(time.perf_counter() - started)


def _client_process(args: tuple) -> tuple[float, float, list[float]]:
    url, clients, n_events, per_request, keys, ndjson, offset, start_at = args
    work = bodies(n_events, per_request, keys, ndjson, offset)
    shares = [work[i::clients] for i in range(clients)]
    latencies: list[float] = []
    while time.time() < start_at:  # every process starts together, after encoding
        time.sleep(0.001)

    async def main() -> None:
        await asyncio.gather(*(_client(url, share, ndjson, latencies) for share in shares))

    began = time.time()
    asyncio.run(main())
    return began, time.time(), latencies


def run_collector(bootstrap: str, topic: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "METERLINE_KAFKA_BROKERS": bootstrap, "METERLINE_USAGE_TOPIC": topic,
           "METERLINE_INGEST_TOKENS": TOKEN, "METERLINE_INGEST_PORT": str(port), "METERLINE_DATA_DIR": str(workdir)}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "collect"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=open(workdir / "collector.log", "ab"))
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return process, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the collector did not start")


def bench(args: argparse.Namespace, bootstrap: str, workdir: Path) -> None:
    topic = f"bench-{int(time.time())}"
    run_blocking(create_topics(bootstrap, {topic: args.partitions}))
    collector, port = run_collector(bootstrap, topic, workdir)
    try:
        url = f"http://127.0.0.1:{port}/v1/events"
        per_proc = args.events // args.client_procs
        start_at = time.time() + 2 + args.events / 200_000  # time to encode the bodies
        jobs = [(url, max(1, args.clients // args.client_procs), per_proc, args.per_request, args.keys,
                 args.ndjson, p * per_proc, start_at) for p in range(args.client_procs)]
        with multiprocessing.get_context("spawn").Pool(args.client_procs) as pool:
            results = pool.map(_client_process, jobs)
    finally:
        collector.terminate()
        collector.wait(30)
    began, ended = min(r[0] for r in results), max(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    total = per_proc * args.client_procs
    print(f"{total} events in {len(latencies)} requests of {args.per_request} "
          f"({'NDJSON' if args.ndjson else 'JSON arrays'}), {args.clients} clients, {args.keys} keys: "
          f"{total / (ended - began):,.0f} events/s acknowledged; request latency p50 "
          f"{statistics.median(latencies) * 1000:.0f} ms, p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="an existing Kafka (default: start a throwaway Apache Kafka)")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--ndjson", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterline-bench-") as tmp:
        workdir = Path(tmp)
        if args.bootstrap:
            bench(args, args.bootstrap, workdir)
        else:
            with ApacheKafka(workdir / "kafka") as broker:
                bench(args, broker.bootstrap, workdir)


if __name__ == "__main__":
    main()
