"""Where answers are read from (schemas/migrations/0008_*.sql): every answer of the query module - summary, models,
series at every granularity, peak hours, CSV - for a key, an org, a project and all keys, on random ranges and
zones, equals the sum of the finest grain: the table's own 15-minute rows, read with projections switched off and
bucketed here in Python (pipeline.usage.ranges.bucket_key). The store mixes parts with and without projections
(as during MATERIALIZE PROJECTION after an upgrade), so both ways of reading are in every answer.

Also: each scope really is read from the projection it is meant to be read from (a planner change would show here
first), a retried flush adds to no projection twice, and applying the migration again changes no answer."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.clickhouse import connect
from pipeline.measures import costs_by_unit
from pipeline.migrations import Migrator, discover
from pipeline.usage.export import write_csv
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import GRANULARITIES, MAX_BUCKETS, QueryError, bucket_key, parse_request
from support.writes import bounds_at, write_events

pytestmark = pytest.mark.clickhouse

NOW = datetime(2026, 11, 12, tzinfo=UTC)
FIRST, LAST = datetime(2026, 9, 20, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)
KEYS = [f"k{i:02d}" for i in range(24)]
ORG = {key: f"o{i % 3}" for i, key in enumerate(KEYS)}
PROJECT = {key: f"{ORG[key]}-p{i // 3 % 2}" for i, key in enumerate(KEYS)}
MODELS = [("gpt-4o", "openai"), ("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-pro", "google"),
          ("gpt-4o-mini", "openai"), ("my-private-model", "")]
ZONES = ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns",
         "America/New_York", "Pacific/Chatham"]
MEASURES = ("requests", "error_requests", "unpriced_requests", "input_tokens", "output_tokens", "cache_read_tokens",
            "cache_write_tokens", "reasoning_tokens", "input_cost", "output_cost", "total_cost")
MAPS = ("units", "unit_costs")  # per-unit Maps, summed key by key (non-zero entries compared)
SCOPE_COLUMN = {"key": 0, "org": 1, "project": 2}


def make_events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(KEYS))]  # a few busy keys, a long tail
    events = []
    for i in range(n):
        key = rng.choices(KEYS, weights)[0]
        ts = FIRST + timedelta(seconds=rng.randrange(int((LAST - FIRST).total_seconds())))
        model, provider = rng.choice(MODELS[: 2 + KEYS.index(key) % 4])
        input_tokens = rng.randint(0, 5000)
        output_tokens = rng.randint(0, 1500)
        events.append({"request_id": f"r{seed}-{i}", "api_key_id": key, "org_id": ORG[key],
                       "project_id": PROJECT[key], "model": model, "provider": provider,
                       "timestamp": int(ts.timestamp() * 1000), "input_tokens": input_tokens,
                       "output_tokens": output_tokens, "cache_read_tokens": rng.randint(0, input_tokens // 3),
                       "reasoning_tokens": rng.randint(0, output_tokens), "status": rng.choice(["ok"] * 5 + ["error"])})
        if model == "claude-sonnet-4-5":  # units beyond the token columns, priced apart (1 h cache writes, searches)
            events[-1]["cache_write_tokens"] = rng.randint(0, input_tokens // 3)
            events[-1]["usage"] = {"cache_write_1h_tokens": rng.randint(0, events[-1]["cache_write_tokens"]),
                                   "web_searches": rng.randint(0, 3)}
    return events


@dataclass
class Store:
    client: object
    queries: UsageQueries
    rows: list[tuple]  # the finest grain: (key, org, project, model, provider, window epoch, price_version, *MEASURES,
    #                    *MAPS)


def finest_grain(client) -> list[tuple]:
    return client.query(
        "SELECT api_key_id, org_id, project_id, model, provider, toUnixTimestamp(hour) + 900 * quarter, "
        f"price_version, {', '.join(MEASURES + MAPS)} FROM rollups WHERE kind = 'usage' "
        "SETTINGS optimize_use_projections = 0").result_rows


@pytest.fixture(scope="module")
def store(chdb_dir) -> Store:
    """Three flushes (parts) through the real writer: the first two before migration 0008 (parts without
    projections, as an upgraded store holds them until MATERIALIZE reaches them), the third after it, with merges
    stopped so the parts stay as written. (A merge rebuilds the projections of the parts it joins; CLEAR PROJECTION
    is a mutation, which stopped merges would never run.)"""
    client = connect(f"chdb://{chdb_dir}?database=r_{uuid4().hex[:12]}")
    migrations = discover()
    Migrator(client, [m for m in migrations if m.id < "0008"]).apply()
    client.command("SYSTEM STOP MERGES rollups")
    now_ms = int(NOW.timestamp() * 1000)
    offset, progress = 0, -1
    for i, events in enumerate([make_events(1500, 1), make_events(1500, 2), make_events(1500, 3)]):
        if i == 2:  # the projections' migration, without the mutations that would fill the older parts
            for statement in next(m for m in migrations if m.id == "0008").statements():
                if "MATERIALIZE PROJECTION" not in statement:
                    client.command(statement)
        landed, _, flush = write_events(client, events, now_ms, first_offset=offset, expected_progress=progress,
                                        bounds=bounds_at(now_ms))
        assert landed
        offset, progress = flush.last_offset + 1, flush.last_offset
    parts = client.query("SELECT count(), countIf(projections = []) FROM system.parts WHERE database = "
                         "currentDatabase() AND table = 'rollups' AND active").result_rows[0]
    assert parts[0] >= 2 and 0 < parts[1] < parts[0], parts  # some parts with projections, some without
    yield Store(client, UsageQueries(client), finest_grain(client))
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
    client.close()


PROJECTIONS = ("usage_keys", "usage_org_15m", "usage_all_15m", "usage_all_models_15m", "usage_all_models_day")


# ---- the brute force ---------------------------------------------------------------------------------------

def chosen(store: Store, request) -> list[tuple]:
    first, end = request.first_window_epoch, request.end_window_epoch
    column = SCOPE_COLUMN.get(request.scope)
    return [r for r in store.rows if (column is None or r[column] == request.scope_id) and first <= r[5] < end]


def add(total: dict, row: tuple) -> None:
    for i, name in enumerate(MEASURES):
        total[name] = total.get(name, 0) + row[7 + i]
    for i, name in enumerate(MAPS):
        summed = total.setdefault(name, {})
        for unit, value in row[7 + len(MEASURES) + i].items():
            summed[unit] = summed.get(unit, 0) + value


def totals_of(totals) -> dict:
    return {name: getattr(totals, name) for name in MEASURES + MAPS}


def zero() -> dict:
    return {**{name: 0 for name in MEASURES}, **{name: {} for name in MAPS}}


def non_zero_maps(total: dict) -> dict:
    """The summed raw maps as every reader shows them: non-zero units; unit_costs with the two remainders derived
    from the summed input and output cost (pipeline.measures.costs_by_unit, applied here to the raw rows' sums)."""
    units = {u: v for u, v in sorted(total["units"].items()) if v}
    return {**total, "units": units,
            "unit_costs": costs_by_unit(total["unit_costs"], total["input_cost"], total["output_cost"])}


def expected_series(rows, request) -> dict:
    buckets = defaultdict(zero)
    for row in rows:
        add(buckets[bucket_key(row[5], request.granularity, request.zone)], row)
    return buckets


def check_every_answer(store: Store, request) -> None:
    rows = chosen(store, request)
    queries = store.queries

    summary = queries.summary(request)
    total = zero()
    for row in rows:
        add(total, row)
    assert totals_of(summary.totals) == non_zero_maps(total)
    assert summary.status.has_usage == bool(total["requests"])

    for order in ("cost", "requests"):
        models = defaultdict(zero)
        for row in rows:
            add(models[(row[3], row[4])], row)
        models = {m: non_zero_maps(t) for m, t in models.items() if any(t.values())}
        got = queries.models(request, order)
        assert {(m.model, m.provider): totals_of(m.totals) for m in got.models} == models
        assert got.total_requests == total["requests"]

    series = queries.series(request)
    expected = expected_series(rows, request)
    keys = request.bucket_keys()
    assert set(expected) <= set(keys)
    assert [(b.requests, b.error_requests, b.input_tokens, b.output_tokens, b.total_cost) for b in series.buckets] == [
        tuple(expected.get(k, zero())[n] for n in ("requests", "error_requests", "input_tokens", "output_tokens",
                                                     "total_cost")) for k in keys]

    peak = queries.peak_hours(request)
    hours = defaultdict(lambda: [0, 0])
    for row in rows:
        local = datetime.fromtimestamp(row[5], request.zone).hour
        hours[local][0] += row[7]
        hours[local][1] += row[7 + MEASURES.index("input_tokens")] + row[7 + MEASURES.index("output_tokens")]
    assert [(h.requests, h.total_tokens) for h in peak.hours] == [tuple(hours[h]) for h in range(24)]

    out = io.StringIO(newline="")
    write_csv(queries, request, out)
    lines = list(csv.DictReader(io.StringIO(out.getvalue())))
    cells = defaultdict(lambda: [zero(), set()])
    for row in rows:
        cell = cells[(bucket_key(row[5], request.granularity, request.zone), row[0], row[3], row[4])]
        add(cell[0], row)
        if row[6]:
            cell[1].add(row[6])
    starts = request.bucket_starts()
    assert len(lines) == len(cells)
    for line in lines:
        key = next(k for k, start in starts.items() if start.isoformat() == line["bucket_start"])
        sums, versions = cells[(key, line["api_key_id"], line["model"], line["provider"])]
        assert {n: (Decimal(line[n]) if "cost" in n else int(line[n])) for n in MEASURES} == {
            n: sums[n] for n in MEASURES}
        for name in MAPS:
            pairs = dict(pair.split("=") for pair in line[name].split(";") if pair)
            number = Decimal if name == "unit_costs" else int
            assert {u: number(v) for u, v in pairs.items()} == non_zero_maps(sums)[name]
        assert line["price_version"] == ";".join(sorted(versions))


# ---- random ranges, zones, scopes and granularities --------------------------------------------------------

SCOPE_IDS = [("key", "k00"), ("key", "k05"), ("key", "k17"), ("org", "o0"), ("org", "o2"), ("project", "o1-p0"),
             ("project", "o2-p1"), ("all", None)]
instants = st.integers(0, int((LAST - FIRST).total_seconds()) // 60 + 3 * 24 * 60).map(
    lambda minutes: FIRST - timedelta(days=1) + timedelta(minutes=minutes))


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scope=st.sampled_from(SCOPE_IDS), a=instants, b=instants, tz=st.sampled_from(ZONES),
       granularity=st.sampled_from([None, *GRANULARITIES]), as_dates=st.booleans())
def test_every_answer_equals_the_finest_grain(store, scope, a, b, tz, granularity, as_dates):
    start, end = min(a, b), max(a, b)
    text = (lambda t: t.astimezone(UTC).date().isoformat()) if as_dates else (lambda t: t.isoformat())
    try:
        request = parse_request(*scope, text(start), text(end), tz, granularity)
    except QueryError:  # empty, too many buckets, no window: nothing to compare
        return
    assert request.bucket_count() <= MAX_BUCKETS
    check_every_answer(store, request)


@pytest.mark.parametrize("scope,scope_id", SCOPE_IDS)
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "Australia/Lord_Howe"])
def test_the_whole_store_in_every_scope(store, scope, scope_id, tz):
    """Ranges off the hour at both ends, over whole days and a DST change, at the automatic granularity."""
    request = parse_request(scope, scope_id, "2026-09-19T22:45:00Z", "2026-11-10T03:30:00+05:30", tz)
    check_every_answer(store, request)
    assert store.queries.summary(request).totals.unit_costs  # the per-unit maps are compared, and not empty


# ---- where it is read from ---------------------------------------------------------------------------------

def read_from(client, sql: str, parameters: dict, settings: dict | None = None) -> set[str]:
    plan = client.query(f"EXPLAIN {sql}", parameters=parameters, settings=settings).result_rows
    return {line.split("ReadFromMergeTree (")[1].split(")")[0] for (line,) in plan if "ReadFromMergeTree" in line}


@pytest.mark.parametrize("scope,scope_id,expected", [
    ("key", "k00", {f"{{db}}.rollups"}),
    ("org", "o1", {"usage_org_15m"}),
    ("project", "o1-p0", {"usage_org_15m"}),
    ("all", None, {"usage_all_15m"}),
])
def test_each_scope_is_read_from_its_projection(store, scope, scope_id, expected):
    """Plans of the summary, series and peak hours (parts without projections are read from their rows as well:
    the plan names both, as a union; a project's org comes from a subquery on usage_keys, planned apart)."""
    from pipeline.usage import query
    request = parse_request(scope, scope_id, "2026-10-01", "2026-11-01", "Asia/Kolkata")
    expected = {name.format(db=store.client.database) for name in expected}
    for template in (query.SUMMARY_SQL, query.SERIES_SQL, query.PEAK_HOURS_SQL):
        sql, parameters = store.queries._bind(template, request)
        sources = read_from(store.client, sql, parameters, query.SCOPE_SETTINGS.get(scope))
        assert expected <= sources, (template, sources)


def test_all_keys_per_model_reads_days_and_edge_windows_from_projections(store):
    from pipeline.usage import query
    request = parse_request("all", None, "2026-09-20T10:15:00Z", "2026-11-03T07:45:00Z")
    sql, parameters = store.queries._all_models(request, query.ORDERS["cost"])
    assert {"usage_all_models_day", "usage_all_models_15m"} <= read_from(store.client, sql, parameters,
                                                                          query.ALL_MODELS_SETTINGS)


def test_the_key_list_and_the_known_state_read_the_key_projection(store):
    from pipeline.usage import query
    plan = read_from(store.client, query.KEYS_SQL, {"prefix": "k0", "limit": 5})
    assert "usage_keys" in plan
    assert store.queries.keys("k0", 5).keys == ("k00", "k01", "k02", "k03", "k04")
    assert store.queries.keys("", 1000).keys == tuple(sorted({r[0] for r in store.rows}))


# ---- writes and migrations ---------------------------------------------------------------------------------

def all_keys_answers(queries: UsageQueries) -> tuple:
    request = parse_request("all", None, "2026-09-19", "2026-11-11", "Asia/Kolkata", "day")
    return (queries.summary(request).totals, queries.models(request).models,
            queries.series(request).buckets, queries.peak_hours(request).hours)


def test_a_retried_flush_adds_to_no_projection_twice(clickhouse):
    events = make_events(300, 9)
    now_ms = int(NOW.timestamp() * 1000)
    assert write_events(clickhouse, events, now_ms, bounds=bounds_at(now_ms))[0]
    before = all_keys_answers(UsageQueries(clickhouse))
    # The same flush again, through the writer's own insert with the same token (a retry whose first attempt
    # landed but whose reply was lost): ClickHouse drops the whole part, projections included.
    from pipeline.metering.sink import _ONE_BLOCK, ROLLUP_COLUMNS, RollupWriter
    from pipeline.metering.failpoints import Failpoints
    from pipeline.metering.rollup import RawMessage, RollupBuilder
    from pipeline.contract import ContractDecoder
    from pipeline.metering.pricing import PriceBook
    from pipeline.metering.dedup import SeenRequests
    from pipeline.metering.sink import FlushRange
    import json
    messages = [RawMessage(i, e["api_key_id"].encode(), json.dumps(e).encode()) for i, e in enumerate(events)]
    rollup = RollupBuilder(ContractDecoder(), PriceBook()).draft(messages, bounds_at(now_ms), SeenRequests()).finish(set())
    writer = RollupWriter(clickhouse, "usage", 7 * 86400, Failpoints())
    encoded = writer.encode(FlushRange(0, 0, len(events) - 1, -1), rollup)
    clickhouse.raw_insert("rollups", ROLLUP_COLUMNS, insert_block=encoded.rollups, fmt="JSONColumns",
                          settings={**_ONE_BLOCK, "insert_deduplication_token": "usage/0/0"})
    assert all_keys_answers(UsageQueries(clickhouse)) == before
    raw = sum(r[7] for r in finest_grain(clickhouse))
    assert before[0].requests == raw == len(events)


def test_migrating_a_filled_store_changes_no_answer_and_can_run_again(clickhouse_url):
    """Usage written before migration 0008, then the migration (its MATERIALIZE run as mutations), then the
    migration's statements once more (an interrupted migration is re-run statement by statement)."""
    client = connect(clickhouse_url)
    before_0008 = [m for m in discover() if m.id < "0008"]
    Migrator(client, before_0008).apply()
    now_ms = int(NOW.timestamp() * 1000)
    assert write_events(client, make_events(800, 4), now_ms, bounds=bounds_at(now_ms))[0]
    raw = sum(r[7] for r in finest_grain(client))
    migration = next(m for m in discover() if m.id == "0008")
    Migrator(client).apply()
    first = all_keys_answers(UsageQueries(client))
    assert first[0].requests == raw == 800
    for statement in migration.statements():
        client.command(statement, settings={"mutations_sync": 2})
    assert all_keys_answers(UsageQueries(client)) == first
    parts = client.query("SELECT groupUniqArray(arrayJoin(projections)) FROM system.parts WHERE database = "
                         "currentDatabase() AND table = 'rollups' AND active").result_rows[0][0]
    assert set(PROJECTIONS) <= set(parts)  # materialized into the part written before the migration
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
    client.close()
