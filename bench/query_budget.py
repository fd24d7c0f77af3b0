"""Read-path timing on a big store: a year of hourly rollups for 1,000 keys x 3 models (26.3M rows), built
with ``INSERT ... SELECT FROM numbers()`` straight into ``rollups`` (/work/shared/research/checked-here.md),
then every usage-page query (summary, models, series, peak hours, key list) and every Grafana panel query
of the "API key usage" dashboard timed on it, plus ``/api/v1/unpriced``.

    .venv/bin/python -m bench.query_budget [--keys 1000] [--models 3] [--units-every 3] [--repeat 7]
                                           [--migrations N] [--dir /tmp/qb]

``--units-every N``: one row in N carries extra units (two keys in ``units``); every priced row carries its
per-unit costs as the writer stores them (``cache_read_tokens`` in ``unit_costs``; the remainders
``input_tokens`` and ``output_tokens`` are derived by readers, docs/pricing.md). ``--migrations 6`` builds the
schema as it was before the per-unit columns (for a before/after comparison; the maps are then not written and
the models query does not read them). Prints one JSON object: the median milliseconds of each query.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.clickhouse import connect
from pipeline.devtools import dashboards
from pipeline.migrations import Migrator, discover
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_request

YEAR_HOURS = 8784  # 2024 is a leap year
FROM, TO = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)


def build(client, keys: int, models: int, units_every: int, with_units: bool) -> int:
    rows = YEAR_HOURS * keys * models
    unit_columns = ", units, unit_costs" if with_units else ""
    unit_values = (f""", if(number % {units_every} = 0, map('input_audio_tokens', 100 + number % 50,
                          'cache_write_1h_tokens', number % 7), map()) AS units,
                   if(number % 97 = 0, map(),
                      map('cache_read_tokens', i / 10)) AS unit_costs"""
                   if with_units else "")
    client.command(f"""
        INSERT INTO rollups (kind, api_key_id, hour, model, provider, org_id, project_id, price_version, requests,
                             error_requests, unpriced_requests, input_tokens, output_tokens, cache_read_tokens,
                             input_cost, output_cost, total_cost{unit_columns})
        SELECT 'usage', concat('key_', leftPad(toString(intDiv(number, {models}) % {keys}), 5, '0')),
               toDateTime('2024-01-01 00:00:00', 'UTC') + intDiv(number, {keys * models}) * 3600,
               concat('model-', toString(number % {models})), 'acme',
               concat('org-', toString(intDiv(number, {models}) % {keys} % 20)),
               concat('proj-', toString(intDiv(number, {models}) % {keys} % 50)),
               if(number % 97 = 0, '', 'v1'), 1 + number % 5, number % 2, if(number % 97 = 0, 1 + number % 5, 0),
               1000 + number % 997, 10 + number % 13, number % 300,
               toDecimal128('0.000001234567890123456789', 24) * (number % 7) AS i,
               toDecimal128('0.000000000000000000000001', 24) * (number % 11) AS o, i + o{unit_values}
        FROM numbers({rows})
        SETTINGS max_partitions_per_insert_block = 0, max_insert_threads = 2""")
    return rows


def grafana_queries(key: str, start: datetime, end: datetime, interval_s: int) -> dict[str, str]:
    """The dashboard's ClickHouse queries with Grafana's macros and variables expanded (as the plugin does:
    tests/integration/test_grafana_panels.py checks the same expansion)."""
    def expand(sql: str) -> str:
        sql = re.sub(r"\$__conditionalAll\(([^,]*), \$\w+\)", "1 = 1", sql)
        sql = re.sub(r"decodeURLComponent\('\$\{(\w+):percentencode\}'\)", f"'{key}'", sql)
        sql = re.sub(r"\$__timeInterval\((\w+)\)", rf"toStartOfInterval(toDateTime(\1), INTERVAL {interval_s} second)",
                     sql)
        sql = sql.replace("$__interval_s", str(interval_s))
        sql = sql.replace("$__fromTime", f"toDateTime({int(start.timestamp())})")
        return sql.replace("$__toTime", f"toDateTime({int(end.timestamp())})")

    names = ("TOTAL_TOKENS_SQL", "INPUT_TOKENS_SQL", "OUTPUT_TOKENS_SQL", "REQUESTS_SQL", "COST_SQL",
             "TOKENS_OVER_TIME_SQL", "INPUT_OUTPUT_SQL", "REQUESTS_PER_HOUR_SQL", "MODELS_SQL", "ORG_VARIABLE_SQL",
             "PROJECT_VARIABLE_SQL", "KEY_VARIABLE_SQL")
    return {name: expand(getattr(dashboards, name)) for name in names}


def timed(fn, repeat: int) -> float:
    fn()  # warm: the first read of a column loads its marks
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--units-every", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--migrations", type=int, default=len(discover()), help="apply migrations 1..N")
    parser.add_argument("--dir", default="")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="query-budget-"))
    client = connect(f"chdb://{folder}", create_database=True)
    migrations = [m for m in discover() if int(m.id) <= args.migrations]
    Migrator(client, migrations).apply()
    with_units = any(m.name == "usage_units" for m in migrations)
    started = time.perf_counter()
    rows = build(client, args.keys, args.models, args.units_every, with_units) if not client.query(
        "SELECT count() FROM rollups").result_rows[0][0] else client.query("SELECT count() FROM rollups").result_rows[0][0]
    built_s = time.perf_counter() - started
    client.command("OPTIMIZE TABLE rollups FINAL")
    queries = UsageQueries(client)
    key = f"key_{args.keys // 2:05d}"
    ranges = {"7d": ("2024-06-01", "2024-06-08", "hour"), "30d": ("2024-06-01", "2024-07-01", "day"),
              "year": ("2024-01-01", "2025-01-01", "week")}
    results: dict[str, float] = {}
    for label, (start, end, granularity) in ranges.items():
        request = parse_request("key", key, start, end, "Europe/Berlin", granularity, max_range_days=400)
        for name in ("summary", "models", "series", "peak_hours"):
            results[f"page {name} {label}"] = timed(lambda: getattr(queries, name)(request), args.repeat)
        org = parse_request("org", "org-3", start, end, "Europe/Berlin", granularity, max_range_days=400)
        results[f"page models org {label}"] = timed(lambda: queries.models(org), args.repeat)
    results["page keys"] = timed(lambda: queries.keys("key_00", 100), args.repeat)
    for label, (start, end, interval) in {"7d": (datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 8, tzinfo=UTC),
                                                 3600),
                                          "year": (FROM, TO, 86400)}.items():
        for name, sql in grafana_queries(key, start, end, interval).items():
            results[f"grafana {name} {label}"] = timed(lambda: client.query(sql), args.repeat)
    if with_units:  # the unpriced list came with the per-unit columns
        for label, (start, end) in {"30d": ("2024-06-01", "2024-07-01"), "year": ("2024-01-01", "2025-01-01")}.items():
            every_key = parse_request("key", "*", start, end, "UTC", max_range_days=400)
            results[f"api unpriced {label}"] = timed(lambda: queries.unpriced(every_key), args.repeat)
    print(json.dumps({"rows": rows, "build_s": round(built_s, 1), "migrations": args.migrations,
                      "ms": results, "max_page_or_grafana_ms": max(v for k, v in results.items()
                                                                   if not k.startswith("api"))}, indent=1))


if __name__ == "__main__":
    main()
