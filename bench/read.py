"""Read benchmark: every route of the usage API and every Grafana panel query, on a year of usage for 10,000 keys.

    .venv/bin/python -m bench.read [--dir DIR] [--reuse] [--runs 25] [--out bench/out/read.json]
    .venv/bin/python -m bench.read --ingest [--flushes 12] [--rounds 6]

The store is built inside ClickHouse (bench/read_store.py: ``INSERT ... SELECT ... FROM numbers()``, no Kafka) in
an embedded chDB folder, migrated like production (projections included). Then, for a typical key, the busiest key,
an org (20 keys), a project (5 keys) and all keys, in UTC and in Asia/Kolkata:

* every route of the API through the real aiohttp application (``create_api_app`` with the worker's ClickHouse
  thread), timed at the client from request to the last byte: summary, models, series (automatic granularity,
  and hour / day / week / month / quarter_hour over the ranges that allow them), peak hours, the CSV, the key list
  and its prefix search;
* every ClickHouse query of the Grafana "API key usage" dashboard, expanded as tests/integration/test_grafana_panels.py
  expands them (tests/support/grafana.py), over the dashboard's default range (7 days) and a year.

Each case runs ``--runs`` times after two warm-up runs; the table gives the median and the 99th percentile (nearest
rank) of the wall time, and the median CPU time of this process (client, server and engine share it), which moves
less than wall time on a machine shared with other work. The load average is recorded before and after.

``--ingest`` measures what the read side costs the write path: a realistic flush (bench/workload.py traffic, 25,000
events of 10,000 keys) inserted the way ``RollupWriter.commit`` inserts it, into a table as it was before migration
0008 with the writer's previous settings, into a table with the projections and those settings, and into one with
the projections and the writer's current settings (``optimize_on_insert = 0``), in rotating rounds; each round
inserts ``--flushes`` flushes and waits for the background merges they cause, and
its CPU time per flush is what the worker pays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import read_store
from pipeline.clickhouse import ClickHouse, connect
from pipeline.config import ApiSettings
from pipeline.migrations import Migrator, discover
from pipeline.usage.api import create_api_app
from pipeline.usage.export import write_csv
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.grafana import ALL, clickhouse_panels, expand, variable_sql  # noqa: E402

ADMIN = "bench-admin-token"
YEAR = ("2025-12-01", "2026-12-01")
DAY_RANGE = ("2026-08-31", "2026-12-01")  # 92 days: daily buckets
HOUR_RANGE = ("2026-10-31", "2026-11-30")  # 30 days: hourly buckets
QUARTER_RANGE = ("2026-11-29", "2026-11-30")  # a day: 15-minute buckets
ZONES = ("UTC", "Asia/Kolkata")
MATCH = [""]  # only the cases whose label contains one of these (--match)


@dataclass
class Timing:
    case: str
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    rows: int = 0

    def summary(self) -> dict:
        walls = sorted(self.wall_ms)
        return {"case": self.case, "median_ms": statistics.median(walls),
                "p99_ms": walls[max(0, -(-99 * len(walls) // 100) - 1)], "cpu_median_ms": statistics.median(self.cpu_ms),
                "runs": len(walls), "rows": self.rows}


def subjects() -> list[tuple[str, str, str | None]]:
    s = read_store.Subjects()
    return [("typical key", "key", s.typical_key), ("busiest key", "key", s.busiest_key), ("org", "org", s.org),
            ("project", "project", s.project), ("all keys", "all", None)]


def api_cases() -> list[tuple[str, str, dict]]:
    """(label, route, query parameters) for every subject and zone, then the key list."""
    cases = []
    for who, scope, scope_id in subjects():
        for tz in ZONES:
            base = {"scope": scope, **({"id": scope_id} if scope_id else {}), "tz": tz}
            year = {**base, "from": YEAR[0], "to": YEAR[1]}
            label = f"{who}, {tz}"
            cases += [
                (f"{label}: summary, year", "summary", year),
                (f"{label}: models, year", "models", year),
                (f"{label}: series, year (auto: week)", "series", year),
                (f"{label}: series, year, month", "series", {**year, "granularity": "month"}),
                (f"{label}: series, 92 days, day", "series", {**base, "from": DAY_RANGE[0], "to": DAY_RANGE[1]}),
                (f"{label}: series, 30 days, hour", "series", {**base, "from": HOUR_RANGE[0], "to": HOUR_RANGE[1]}),
                (f"{label}: series, a day, quarter_hour", "series",
                 {**base, "from": QUARTER_RANGE[0], "to": QUARTER_RANGE[1]}),
                (f"{label}: series, year, hour (8,760 buckets)", "series", {**year, "granularity": "hour"}),
                (f"{label}: peak-hours, year", "peak-hours", year),
                (f"{label}: export.csv, 30 days, day", "export.csv",
                 {**base, "from": HOUR_RANGE[0], "to": HOUR_RANGE[1], "granularity": "day"}),
                (f"{label}: compare, 30 days", "compare", {**base, "from": HOUR_RANGE[0], "to": HOUR_RANGE[1]}),
                (f"{label}: month-to-date", "month-to-date", base),
            ]
            if scope == "key":
                cases.append((f"{label}: alerts, year", "alerts", {"key": scope_id, "tz": tz, "from": YEAR[0],
                                                                   "to": YEAR[1]}))
    for tz in ZONES:
        cases += [(f"busiest-keys, year, {tz}", "busiest-keys", {"from": YEAR[0], "to": YEAR[1], "tz": tz}),
                  (f"busiest-keys, 30 days, {tz}", "busiest-keys", {"from": HOUR_RANGE[0], "to": HOUR_RANGE[1],
                                                                     "tz": tz}),
                  (f"unpriced, year, {tz}", "unpriced", {"from": YEAR[0], "to": YEAR[1], "tz": tz})]
    cases += [("key list (first 100)", "keys", {}), ("key list, prefix key_05", "keys", {"q": "key_05"}),
              ("key list, prefix key_0999", "keys", {"q": "key_0999"})]
    return cases


async def time_api(client, runs: int) -> list[Timing]:
    clickhouse = ClickHouse(client)
    queries = UsageQueries(client, read_store.TOPIC)
    app = create_api_app(queries, clickhouse.run, ApiSettings(admin_token=ADMIN, max_range_days=400))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    timings = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session:
            for label, route, params in api_cases():
                if not any(m in label for m in MATCH):
                    continue
                timing = Timing(label)
                # A CSV of every key reads every key's rows (no projection keeps a row per key): seconds, so 3 runs.
                slow = route == "export.csv" and params["scope"] == "all"
                for i in range((3 if slow else runs) + 2):
                    wall, cpu = time.perf_counter(), time.process_time()
                    async with session.get(f"http://127.0.0.1:{port}/api/v1/{route}", params=params) as response:
                        body = await response.read()
                        assert response.status == 200, (label, response.status, body[:300])
                    if i >= 2:
                        timing.wall_ms.append((time.perf_counter() - wall) * 1000)
                        timing.cpu_ms.append((time.process_time() - cpu) * 1000)
                if route == "export.csv":
                    timing.rows = body.count(b"\n") - 1
                timings.append(timing)
                print(f"  {json.dumps(timing.summary())}", flush=True)
    finally:
        await runner.cleanup()
    return timings


def grafana_cases() -> list[tuple[str, str, dict, datetime, datetime, int]]:
    """(label, expanded-panel title, variables, from, to, interval) for every panel and scope: the default 7 days
    (hourly intervals) and a year (daily intervals)."""
    end = datetime.fromisoformat(YEAR[1] + "T00:00:00+00:00")
    ranges = [("7 days", end - timedelta(days=7), 3600), ("year", end - timedelta(days=365), 86400)]
    cases = []
    for who, scope, scope_id in subjects():
        chosen = {"key": ALL, "org": ALL, "project": ALL}
        if scope != "all":
            chosen[scope] = scope_id
        for panel in clickhouse_panels():
            for span, start, interval in ranges:
                cases.append((f"{who}: {panel['title']}, {span}", panel["targets"][0]["rawSql"], chosen, start, end,
                              interval))
    for name in ("org", "project", "key"):
        cases.append((f"variable {name} (org, project All)", variable_sql(name), {"org": ALL, "project": ALL},
                      end - timedelta(days=7), end, 3600))
    return cases


def time_grafana(client, runs: int) -> list[Timing]:
    timings = []
    for label, sql, chosen, start, end, interval in grafana_cases():
        expanded = expand(sql, start, end, interval, **chosen)
        timing = Timing(label)
        for i in range(runs + 2):
            wall, cpu = time.perf_counter(), time.process_time()
            rows = client.query(expanded).result_rows
            if i >= 2:
                timing.wall_ms.append((time.perf_counter() - wall) * 1000)
                timing.cpu_ms.append((time.process_time() - cpu) * 1000)
        timing.rows = len(rows)
        timings.append(timing)
        print(f"  {json.dumps(timing.summary())}", flush=True)
    return timings


class _Counting:
    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def time_csv(client, runs: int = 3) -> dict:
    """A year of hourly CSV for the busiest key, written to a sink that only counts: rows/s and peak Python memory
    (tracemalloc) against a month of the same, which must be about equal (constant memory)."""
    queries = UsageQueries(client, read_store.TOPIC)
    key = read_store.Subjects().busiest_key
    out = {}
    for span, (start, end) in (("year", YEAR), ("month", HOUR_RANGE)):
        request = parse_request("key", key, start, end, "UTC", "hour")
        rates, peaks = [], []
        for _ in range(runs):  # the rate without tracemalloc (it slows Python several times), then the memory
            wall = time.perf_counter()
            stats = write_csv(queries, request, _Counting())
            rates.append(stats.rows / (time.perf_counter() - wall))
        tracemalloc.start()
        write_csv(queries, request, _Counting())
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        out[span] = {"rows": stats.rows, "rows_per_s": statistics.median(rates),
                     "peak_python_memory_mib": max(peaks) / 2**20}
        print(f"  CSV {span}: {json.dumps(out[span])}", flush=True)
    return out


def build(url: str, keys: int) -> dict:
    client = connect(url, create_database=True)
    Migrator(client).apply()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = read_store.build(client, keys=keys)
    built = {"usage_rows": rows, "build_s": time.perf_counter() - wall, "build_cpu_s": time.process_time() - cpu}
    client.close()
    return built


def describe_store(client) -> dict:
    parts = client.query("SELECT count(), sum(rows), sum(bytes_on_disk) FROM system.parts WHERE database = "
                         "currentDatabase() AND table = 'rollups' AND active").result_rows[0]
    projections = client.query("SELECT name, sum(rows) FROM system.projection_parts WHERE database = "
                               "currentDatabase() AND table = 'rollups' AND active GROUP BY name ORDER BY name")
    return {"parts": parts[0], "rows": parts[1], "bytes_on_disk": parts[2],
            "projection_rows": dict(projections.result_rows)}


def run_read(args: argparse.Namespace) -> dict:
    folder = Path(args.dir or tempfile.mkdtemp(prefix="meterline-read-"))
    url = f"chdb://{folder}?database=read_bench"
    result: dict = {"machine": machine(), "load_before": os.getloadavg(), "keys": args.keys, "runs": args.runs}
    if not args.reuse:
        print(f"building the store in {folder} ...", flush=True)
        result["build"] = build(url, args.keys)
        print(f"  {result['build']}", flush=True)
    client = connect(url)
    client.command("SYSTEM STOP MERGES rollups")  # steady parts while timing; merges would compete for the cores
    result["store"] = describe_store(client)
    print(f"store: {result['store']}", flush=True)
    result["api"], result["grafana"] = [], []
    if "api" in args.only:
        print("API routes:", flush=True)
        result["api"] = [t.summary() for t in asyncio.run(time_api(client, args.runs))]
    if "grafana" in args.only:
        print("Grafana panels:", flush=True)
        result["grafana"] = [t.summary() for t in time_grafana(client, args.runs)]
    if "csv" in args.only:
        print("CSV streaming:", flush=True)
        result["csv"] = time_csv(client)
    result["load_after"] = os.getloadavg()
    client.command("SYSTEM START MERGES rollups")
    client.close()
    return result


# ---- ingest: what the projections cost a flush -------------------------------------------------------------

def run_ingest(args: argparse.Namespace) -> dict:
    from bench.workload import generate
    from pipeline.contract import ContractDecoder
    from pipeline.metering import sink
    from pipeline.metering.dedup import SeenRequests
    from pipeline.metering.failpoints import Failpoints
    from pipeline.metering.pricing import PriceBook
    from pipeline.metering.rollup import RawMessage, RollupBuilder, TimeBounds

    now_ms = int(time.time() * 1000)
    work = generate(args.events, now_ms)
    messages = [RawMessage(i, key.encode(), event) for i, (key, event) in enumerate(zip(work.keys, work.events))]
    bounds = TimeBounds(now_ms, 7 * 86_400_000, 300_000, 86_400_000)
    rollup = RollupBuilder(ContractDecoder(), PriceBook()).draft(messages, bounds, SeenRequests()).finish(set())
    folder = Path(args.dir or tempfile.mkdtemp(prefix="meterline-ingest-"))
    before = [m for m in discover() if m.id < "0008"]
    variants = {  # name: (migrations, insert settings); the first is the baseline the ratios compare with
        "before (no projections, optimize_on_insert)": (before, {**sink._ONE_BLOCK, "optimize_on_insert": 1}),
        "projections of 0008, optimize_on_insert": (discover(), {**sink._ONE_BLOCK, "optimize_on_insert": 1}),
        "now (projections of 0008, no optimize_on_insert)": (discover(), sink._ONE_BLOCK),
    }
    clients = {}
    for i, (name, (migrations, _)) in enumerate(variants.items()):
        client = connect(f"chdb://{folder}?database=ingest_{i}", create_database=True)
        Migrator(client, migrations).apply()
        clients[name] = client
    writer = sink.RollupWriter(next(iter(clients.values())), "usage", 7 * 86400, Failpoints())
    per_flush: dict[str, list[float]] = {name: [] for name in variants}
    insert_wall: dict[str, list[float]] = {name: [] for name in variants}
    offset = 0
    for round_ in range(args.rounds):
        order = list(variants)[round_ % len(variants):] + list(variants)[:round_ % len(variants)]  # rotate
        for name in order:
            client, settings = clients[name], variants[name][1]
            cpu = time.process_time()
            for _ in range(args.flushes):
                flush = sink.FlushRange(0, offset, offset + args.events - 1, offset - 1)
                body = writer.encode(flush, rollup).rollups
                wall = time.perf_counter()
                client.raw_insert("rollups", sink.ROLLUP_COLUMNS, insert_block=body, fmt="JSONColumns",
                                  settings={**settings, "insert_deduplication_token": f"usage/0/{offset}"})
                insert_wall[name].append((time.perf_counter() - wall) * 1000)
                offset += args.events
            while client.query("SELECT count() FROM system.merges WHERE database = currentDatabase()").result_rows[0][0]:
                time.sleep(0.05)
            per_flush[name].append((time.process_time() - cpu) * 1000 / args.flushes)
    out = {"events_per_flush": args.events, "rows_per_flush": len(rollup.groups), "machine": machine(),
           "load_before": os.getloadavg()}
    for name in variants:
        out[name] = {"cpu_ms_per_flush_median": statistics.median(per_flush[name]),
                     "cpu_ms_per_flush_rounds": per_flush[name],
                     "insert_wall_ms_median": statistics.median(insert_wall[name])}
    baseline = out[next(iter(variants))]["cpu_ms_per_flush_median"]
    out["cpu_ratio_over_before"] = {name: out[name]["cpu_ms_per_flush_median"] / baseline for name in variants}
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))
    for client in clients.values():
        client.close()
    return out


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def markdown(result: dict) -> str:
    """The tables of bench/RESULTS.md's read section."""
    lines = ["| case | median ms | p99 ms | CPU median ms |", "| --- | --- | --- | --- |"]
    for row in result["api"] + result["grafana"]:
        extra = f" ({row['rows']:,} rows)" if row.get("rows") and "export" in row["case"] else ""
        lines.append(f"| {row['case']}{extra} | {row['median_ms']:.1f} | {row['p99_ms']:.1f} | "
                     f"{row['cpu_median_ms']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="chDB folder (default: a new temporary one)")
    parser.add_argument("--reuse", action="store_true", help="time an already built store in --dir")
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--keys", type=int, default=read_store.KEYS,
                        help=f"keys in the store (default {read_store.KEYS:,}; at least 2,500: the org read is org_123)")
    parser.add_argument("--out", default="bench/out/read.json")
    parser.add_argument("--only", default="api,grafana,csv", help="comma-separated: api, grafana, csv")
    parser.add_argument("--match", action="append", help="time only API cases whose label contains this (repeatable)")
    parser.add_argument("--ingest", action="store_true", help="measure the flush's insert cost instead")
    parser.add_argument("--events", type=int, default=25_000)
    parser.add_argument("--flushes", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    MATCH[:] = args.match or [""]
    result = run_ingest(args) if args.ingest else run_read(args)
    out = Path(args.out if not args.ingest or args.out != "bench/out/read.json" else "bench/out/ingest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    if not args.ingest:
        out.with_suffix(".md").write_text(markdown(result) + "\n")
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
