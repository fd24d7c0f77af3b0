"""meterline benchmark: events/s, latency and memory, as ratios to baselines measured in the same run.

    .venv/bin/python -m bench.run [--events 1000000] [--out bench/out/results.json]

Starts its own Apache Kafka (deploy/kafka), fills topics with the same synthetic events in two shapes,
then measures in one run on one machine:
  A. a plain aiokafka consumer reading and JSON-decoding the topic (events/s);
  B. an empty Faust agent that only iterates the topic (messages/s): Faust's own ceiling;
  Q. quix-streams (pinned 3.28.1, its own venv: --quix-python) on the same topic: a per-key hourly tumbling
     window summing per-model requests and tokens by event time, and a plain dict aggregate (events/s);
  W. the meterline worker (a subprocess, embedded ClickHouse), from empty state until every event is
     durable in ClickHouse, for both shapes; its peak RSS;
  L. end-to-end latency at a fixed offered load: produce -> committed to usage_hourly, p50/p99;
  S. two workers on one 4-partition topic (sharing ClickHouse through the chDB HTTP server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench.baselines import aiokafka_decode_rate, faust_iterate_rate, quix_rate
from bench.workload import batch_messages, generate, produce_fast, single_messages
from pipeline.devtools.brokers import ApacheKafka
from pipeline.kafka import create_topics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.processes import ChdbHttpProcess, WorkerProcess  # noqa: E402

PARTITIONS = 4


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_worker(bootstrap: str, topic: str, n_messages: int, n_events: int, workdir: Path,
                     url: str | None = None, workers: int = 1) -> dict:
    """Seconds from the first worker being positioned until every message's offset is committed; events/s is
    ``n_events`` (every event of the topic) over those seconds. The workers' ``meterline_events_consumed_total``
    must then reach ``n_events`` (a flush's progress is visible a moment before its metrics are recorded)."""
    url = url or f"chdb://{workdir / 'clickhouse'}"
    procs = [WorkerProcess(workdir / f"w{i}", bootstrap, topic, url, group=f"g-{topic}", flush_interval="1s",
                           extra_env={"METERLINE_KAFKA_SESSION_TIMEOUT": "10s", "METERLINE_ALERTS_IN_WORKER": "false"}).start()
             for i in range(workers)]
    try:
        ends = await partition_ends(bootstrap, topic)
        started = None
        while True:
            statuses = [p.status() for p in procs]
            if started is None and all(s and s["positioned"] for s in statuses) and \
                    sum(len(s["partitions"]) for s in statuses) == PARTITIONS:
                started = time.perf_counter()
            progress = {int(k): v for s in statuses if s for k, v in s["partitions"].items()}
            if started and all(progress.get(p, -1) >= end - 1 for p, end in ends.items()):
                elapsed = time.perf_counter() - started
                break
            if not all(p.alive for p in procs):
                raise RuntimeError("worker died:\n" + "\n".join(p.log_tail() for p in procs))
            await asyncio.sleep(0.05)
        events = await _consumed(procs, n_events)
        rss = max(peak_rss_mb(p.process.pid) for p in procs)
        return {"seconds": elapsed, "events": events, "events_per_s": n_events / elapsed,
                "messages_per_s": n_messages / elapsed, "peak_rss_mb": rss, "workers": workers}
    finally:
        for p in procs:
            p.stop()


async def _consumed(procs: list[WorkerProcess], n_events: int, timeout_s: float = 30.0) -> float:
    """The workers' consumed-events counter once it reaches ``n_events``; RuntimeError if it does not."""
    deadline = time.perf_counter() + timeout_s
    while (events := sum(p.metric("meterline_events_consumed_total") for p in procs)) < n_events:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"workers consumed {events:,.0f} of {n_events:,} events")
        await asyncio.sleep(0.05)
    return events


async def partition_ends(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def latency(bootstrap: str, workdir: Path, rate: int, seconds: int) -> dict:
    """Offered load of ``rate`` events/s in 100-event batches; latency = produce ack -> offset committed."""
    from bench.latency import measure_latency

    topic = "bench-latency"
    await create_topics(bootstrap, {topic: PARTITIONS})
    worker = WorkerProcess(workdir / "lat", bootstrap, topic, f"chdb://{workdir / 'lat-ch'}", group="g-lat",
                           flush_interval="0.5s").start()
    try:
        while not (worker.status() or {}).get("positioned"):
            await asyncio.sleep(0.1)
        return await measure_latency(bootstrap, topic, PARTITIONS, worker, rate, seconds)
    finally:
        worker.stop()


async def main(args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="meterline-bench-"))
    results: dict = {"machine": machine(), "events": args.events}
    with ApacheKafka(workdir / "kafka") as broker:
        bootstrap = broker.bootstrap
        workload = generate(args.events, now_ms())
        shapes = {"single": single_messages(workload), "batch100": batch_messages(workload)}
        for shape, messages in shapes.items():
            if shape not in args.shapes:
                continue
            topic = f"bench-{shape}"
            await create_topics(bootstrap, {topic: PARTITIONS})
            produce_s = await produce_fast(bootstrap, topic, PARTITIONS, messages)
            row = {"messages": len(messages), "events_per_message": len(workload.events) / len(messages),
                   "produce_s": produce_s}
            if args.baselines:
                row["baseline_a"] = await aiokafka_decode_rate(bootstrap, topic, PARTITIONS, len(messages))
                row["baseline_b"] = faust_iterate_rate(bootstrap, topic, len(messages))
            if args.quix_python:
                row["quix_window"] = quix_rate(args.quix_python, bootstrap, topic, len(workload.events), "window")
                row["quix_dict"] = quix_rate(args.quix_python, bootstrap, topic, len(workload.events), "dict")
            row["worker"] = await run_worker(bootstrap, topic, len(messages), len(workload.events),
                                            workdir / f"run-{shape}")
            if shape == "batch100" and args.scaling:
                server = ChdbHttpProcess(workdir / "shared-ch").start()
                try:
                    row["two_workers"] = await run_worker(bootstrap, topic, len(messages), len(workload.events), workdir / "scale",
                                                          url=f"{server.url}/bench", workers=2)
                    row["one_worker_http"] = await run_worker(bootstrap, topic, len(messages), len(workload.events),
                                                              workdir / "scale1",
                                                              url=f"{server.url}/bench1", workers=1)
                finally:
                    server.kill()
            results[shape] = row
        if args.latency_rate:
            results["latency"] = await latency(bootstrap, workdir, args.latency_rate, args.latency_seconds)
    return results


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "cpu": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def report(results: dict) -> str:
    lines = [f"machine: {results['machine']}", f"events: {results['events']:,}", ""]
    header = f"{'shape':<10} {'ev/msg':>6} {'A aiokafka ev/s':>16} {'B faust msg/s':>14} {'worker ev/s':>12} " \
             f"{'worker msg/s':>12} {'W/A':>5} {'Wmsg/B':>7} {'RSS MB':>7}"
    lines.append(header)
    for shape in ("single", "batch100"):
        row = results.get(shape)
        if not row:
            continue
        w = row["worker"]
        if "baseline_a" not in row:
            lines.append(f"{shape:<10} {row['events_per_message']:>6.1f} worker {w['events_per_s']:,.0f} ev/s, "
                         f"{w['messages_per_s']:,.0f} msg/s, peak RSS {w['peak_rss_mb']:.0f} MB")
            continue
        a, b = row["baseline_a"], row["baseline_b"]
        lines.append(f"{shape:<10} {row['events_per_message']:>6.1f} {a['events_per_s']:>16,.0f} "
                     f"{b['messages_per_s']:>14,.0f} {w['events_per_s']:>12,.0f} {w['messages_per_s']:>12,.0f} "
                     f"{w['events_per_s'] / a['events_per_s']:>5.2f} {w['messages_per_s'] / b['messages_per_s']:>7.2f} "
                     f"{w['peak_rss_mb']:>7.0f}")
    for shape in ("single", "batch100"):
        row = results.get(shape, {})
        if "quix_window" in row:
            w, qw, qd = row["worker"], row["quix_window"], row["quix_dict"]
            lines.append(f"{shape}: Q quix-streams window {qw['events_per_s']:,.0f} ev/s, dict {qd['events_per_s']:,.0f}"
                         f" ev/s; worker / Q window {w['events_per_s'] / qw['events_per_s']:.2f}, worker / Q dict "
                         f"{w['events_per_s'] / qd['events_per_s']:.2f}")
    row = results.get("batch100", {})
    if "two_workers" in row:
        one, two = row["one_worker_http"], row["two_workers"]
        lines.append(f"scaling (ClickHouse over HTTP): 1 worker {one['events_per_s']:,.0f} ev/s, 2 workers "
                     f"{two['events_per_s']:,.0f} ev/s ({two['events_per_s'] / one['events_per_s']:.2f}x)")
    if "latency" in results:
        lat = results["latency"]
        lines.append(f"latency at {lat['offered_events_per_s']:,} ev/s offered: p50 {lat['p50_s']:.2f} s, "
                     f"p99 {lat['p99_s']:.2f} s, max {lat['max_s']:.2f} s ({lat['samples']} batches)")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--latency-rate", type=int, default=10_000, help="offered events/s (0: skip)")
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--no-scaling", dest="scaling", action="store_false")
    parser.add_argument("--no-baselines", dest="baselines", action="store_false", help="worker runs only")
    parser.add_argument("--shapes", nargs="+", default=["single", "batch100"], choices=["single", "batch100"])
    parser.add_argument("--out", type=Path, default=Path("bench/out/results.json"))
    default_quix = Path(".venv-quix/bin/python")
    parser.add_argument("--quix-python", type=lambda text: Path(text) if text else None,
                        default=default_quix if default_quix.exists() else None,
                        help="python of a venv with quixstreams==3.28.1 (default .venv-quix/bin/python if present; "
                             "'' skips baseline Q)")
    arguments = parser.parse_args()
    outcome = asyncio.run(main(arguments))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(outcome, indent=2))
    print(report(outcome))
