"""The usage view on real embedded ClickHouse, filled through the real writer: every number equals a ledger
computed here in plain Python over the generated events (cost from genai-prices' calc_price per event)."""

from __future__ import annotations

import csv
import io
import random
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from genai_prices import Usage, calc_price

from pipeline.clickhouse import connect
from pipeline.usage.export import CSV_COLUMNS, write_csv
from pipeline.migrations import Migrator
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_request
from support.writes import bounds_at, write_events

pytestmark = pytest.mark.clickhouse

NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)
FIRST = datetime(2026, 10, 20, tzinfo=UTC)
LAST = datetime(2026, 11, 10, tzinfo=UTC)
GAP = (datetime(2026, 10, 27, 23, tzinfo=UTC), datetime(2026, 10, 29, 23, tzinfo=UTC))  # Berlin Oct 28-29: key-a idle
KEYS = {"key-a": ("org-1", "proj-x"), "key-b": ("org-1", "proj-y"), "key-c": ("org-2", "proj-z")}
MODELS = [("gpt-4o", "openai"), ("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-pro", "google"),
          ("my-private-model", ""), ("gpt-audio", "openai")]
SCOPE_FIELD = {"key": "api_key_id", "org": "org_id", "project": "project_id"}
BERLIN, KOLKATA = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")


def make_events(n: int = 4000, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    events: list[dict] = []
    while len(events) < n:
        key = rng.choice(["key-a", "key-a", "key-b", "key-c"])
        until = datetime(2026, 10, 22, tzinfo=UTC) if key == "key-c" else LAST  # key-c stops early
        ts = FIRST + timedelta(milliseconds=rng.randrange(int((until - FIRST).total_seconds() * 1000)))
        if key == "key-a" and GAP[0] <= ts < GAP[1]:
            continue
        model, provider = rng.choice(MODELS)
        input_tokens = rng.choice([rng.randint(0, 3000), rng.randint(190_000, 210_000)])
        output_tokens = rng.randint(0, 2000)
        cache_read = rng.randint(0, input_tokens // 2)
        event = {
            "request_id": f"q-{len(events)}", "api_key_id": key, "org_id": KEYS[key][0], "project_id": KEYS[key][1],
            "model": model, "provider": provider, "timestamp": int(ts.timestamp() * 1000),
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_tokens": cache_read,
            "cache_write_tokens": rng.randint(0, input_tokens - cache_read),
            "reasoning_tokens": rng.randint(0, output_tokens), "status": rng.choice(["ok", "ok", "ok", "error"]),
        }
        if model == "claude-sonnet-4-5":  # 1 h cache writes and web searches, billed apart
            event["usage"] = {"cache_write_1h_tokens": rng.randint(0, event["cache_write_tokens"]),
                              "web_searches": rng.randint(0, 3)}
        elif model == "gpt-audio":  # audio tokens, in and out
            event.update(cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0)
            event["usage"] = {"input_audio_tokens": rng.randint(0, input_tokens),
                              "output_audio_tokens": rng.randint(0, output_tokens)}
        events.append(event)
    return events


@dataclass(frozen=True)
class Priced:
    event: dict
    hour: datetime  # start of the event's UTC hour
    window: datetime  # start of its 15-minute window (the storage grain)
    input_cost: Decimal
    output_cost: Decimal
    unpriced: bool


def price(event: dict) -> Priced:
    at = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
    hour = at.replace(minute=0, second=0, microsecond=0)
    window = at.replace(minute=at.minute // 15 * 15, second=0, microsecond=0)
    try:
        p = calc_price(Usage(input_tokens=event["input_tokens"], output_tokens=event["output_tokens"],
                             cache_read_tokens=event["cache_read_tokens"],
                             cache_write_tokens=event["cache_write_tokens"],
                             output_reasoning_tokens=event["reasoning_tokens"], **event.get("usage", {})),
                       event["model"], provider_id=event["provider"] or None, genai_request_timestamp=at)
    except LookupError:
        return Priced(event, hour, window, Decimal(0), Decimal(0), True)
    # genai-prices counts units without a direction (web searches) in total_price only; meterline's rule puts
    # them on the input side, so input + output = total
    return Priced(event, hour, window, p.total_price - p.output_price, p.output_price, False)


TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


def sums(items: list[Priced]) -> dict:
    out = dict.fromkeys(("requests", "error_requests", "unpriced_requests", *TOKEN_FIELDS), 0)
    out.update(input_cost=Decimal(0), output_cost=Decimal(0))
    units: dict = defaultdict(int)
    for p in items:
        out["requests"] += 1
        out["error_requests"] += p.event["status"] == "error"
        out["unpriced_requests"] += p.unpriced
        for name in TOKEN_FIELDS:
            out[name] += p.event[name]
        for name, count in p.event.get("usage", {}).items():
            units[name] += count
        out["input_cost"] += p.input_cost
        out["output_cost"] += p.output_cost
    out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
    out["total_cost"] = out["input_cost"] + out["output_cost"]
    out["units"] = {name: units[name] for name in sorted(units) if units[name]}
    return out


def select(ledger: list[Priced], scope: str, scope_id: str, start: datetime, end: datetime) -> list[Priced]:
    """The documented rule: a stored 15-minute window counts when its start lies in [start, end)."""
    return [p for p in ledger if p.event[SCOPE_FIELD[scope]] == scope_id and start <= p.window < end]


def totals_dict(totals) -> dict:
    assert sum(totals.unit_costs.values()) == totals.total_cost  # the per-unit costs add up exactly
    return {name: getattr(totals, name) for name in sums([]).keys()}


@dataclass
class Store:
    url: str
    client: object
    queries: UsageQueries
    ledger: list[Priced]


@pytest.fixture(scope="module")
def store(chdb_dir) -> Store:
    url = f"chdb://{chdb_dir}?database=q_{uuid4().hex[:12]}"
    client = connect(url)
    Migrator(client).apply()
    events = make_events()
    now_ms = int(NOW.timestamp() * 1000)
    landed, _, _ = write_events(client, events, now_ms, bounds=bounds_at(now_ms, 60 * 86_400_000))
    assert landed
    yield Store(url, client, UsageQueries(client), [price(e) for e in events])
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
    client.close()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("scope,scope_id", [("key", "key-a"), ("org", "org-1"), ("project", "proj-y")])
def test_summary_equals_the_ledger(store, scope, scope_id):
    summary = store.queries.summary(parse_request(scope, scope_id, "2026-10-21", "2026-11-05"))
    expected = sums(select(store.ledger, scope, scope_id, utc(2026, 10, 21), utc(2026, 11, 5)))
    assert expected["requests"] > 100 and expected["unpriced_requests"] > 0 and expected["error_requests"] > 0
    assert totals_dict(summary.totals) == expected
    t = summary.totals
    assert t.avg_tokens_per_request == (Decimal(t.total_tokens) / t.requests).quantize(Decimal("0.01"))
    assert t.output_input_ratio == (Decimal(t.output_tokens) / t.input_tokens).quantize(Decimal("0.0001"))
    assert summary.status.has_usage and summary.status.state == "usage"


@pytest.mark.parametrize("order", ["cost", "requests"])
def test_model_breakdown_equals_the_ledger(store, order):
    breakdown = store.queries.models(parse_request("org", "org-1", "2026-10-20", "2026-11-10"), order)
    chosen = select(store.ledger, "org", "org-1", FIRST, LAST)
    by_model = defaultdict(list)
    for p in chosen:
        by_model[(p.event["model"], p.event["provider"])].append(p)
    got = {(m.model, m.provider): m for m in breakdown.models}
    assert set(got) == set(by_model) and breakdown.total_requests == len(chosen)
    for model, items in by_model.items():
        assert totals_dict(got[model].totals) == sums(items)
        share = (Decimal(len(items)) / len(chosen)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN)
        assert got[model].request_share == share
    audio = got[("gpt-audio", "openai")].totals
    assert set(audio.units) == {"input_audio_tokens", "output_audio_tokens"}
    assert set(audio.unit_costs) == {"input_tokens", "input_audio_tokens", "output_tokens", "output_audio_tokens"}
    claude = got[("claude-sonnet-4-5", "anthropic")].totals
    assert set(claude.units) == {"cache_write_1h_tokens", "web_searches"}
    # $10 per 1,000 searches: the searches' cost is known by hand
    assert claude.unit_costs["web_searches"] == claude.units["web_searches"] * Decimal("0.01")
    keys = [(m.totals.total_cost, m.totals.requests) if order == "cost" else (m.totals.requests, m.totals.total_cost)
            for m in breakdown.models]
    assert keys == sorted(keys, reverse=True)


def bucketed(items: list[Priced], key) -> dict:
    groups = defaultdict(list)
    for p in items:
        groups[key(p)].append(p)
    return groups


def assert_series_matches(series, items: list[Priced], bucket_of) -> None:
    expected = bucketed(items, bucket_of)
    assert set(expected) <= {b.start for b in series.buckets}
    for bucket in series.buckets:
        want = sums(expected.get(bucket.start, []))
        assert (bucket.requests, bucket.error_requests, bucket.input_tokens, bucket.output_tokens,
                bucket.total_tokens, bucket.total_cost) == tuple(want[n] for n in (
                    "requests", "error_requests", "input_tokens", "output_tokens", "total_tokens", "total_cost"))


def local_midnight(p: Priced, zone: ZoneInfo) -> datetime:
    return datetime.combine(p.window.astimezone(zone).date(), datetime.min.time(), zone)


def test_daily_series_in_berlin_has_a_25_hour_day_and_zero_filled_gap(store):
    request = parse_request("key", "key-a", "2026-10-20", "2026-11-10", "Europe/Berlin")
    assert request.granularity == "day"
    series = store.queries.series(request)
    starts = [b.start for b in series.buckets]
    assert len(starts) == 21 and starts[0] == datetime(2026, 10, 20, tzinfo=BERLIN)
    assert all(s.tzinfo is not None and s.hour == 0 for s in starts)
    # (subtracting in UTC: Python subtracts same-tzinfo datetimes as wall clocks)
    lengths = {s.date().isoformat(): (n.astimezone(UTC) - s.astimezone(UTC)) / timedelta(hours=1)
               for s, n in zip(starts, starts[1:])}
    assert lengths["2026-10-25"] == 25 and lengths["2026-10-24"] == 24 == lengths["2026-10-26"]
    assert starts[5].isoformat() == "2026-10-25T00:00:00+02:00" and starts[6].isoformat() == "2026-10-26T00:00:00+01:00"
    idle = [b for b in series.buckets if b.start.date().isoformat() in ("2026-10-28", "2026-10-29")]
    assert [b.requests for b in idle] == [0, 0] and idle[0].total_cost == 0
    start, end = datetime(2026, 10, 20, tzinfo=BERLIN), datetime(2026, 11, 10, tzinfo=BERLIN)
    assert_series_matches(series, select(store.ledger, "key", "key-a", start, end), lambda p: local_midnight(p, BERLIN))


def test_hourly_series_fills_every_hour(store):
    request = parse_request("key", "key-a", "2026-10-27T12:00:00Z", "2026-10-29T12:00:00Z")
    assert request.granularity == "hour"
    series = store.queries.series(request)
    assert [b.start for b in series.buckets] == [utc(2026, 10, 27, 12) + timedelta(hours=h) for h in range(48)]
    assert sum(b.requests for b in series.buckets if GAP[0] <= b.start < GAP[1]) == 0
    assert_series_matches(series, select(store.ledger, "key", "key-a", utc(2026, 10, 27, 12), utc(2026, 10, 29, 12)),
                          lambda p: p.hour)


@pytest.mark.parametrize("granularity,count", [("week", 4), ("month", 2)])
def test_weekly_and_monthly_series(store, granularity, count):
    series = store.queries.series(parse_request("key", "key-b", "2026-10-19", "2026-11-16", "Europe/Berlin",
                                                granularity))
    assert len(series.buckets) == count
    items = select(store.ledger, "key", "key-b", datetime(2026, 10, 19, tzinfo=BERLIN),
                   datetime(2026, 11, 16, tzinfo=BERLIN))

    def bucket(p: Priced) -> datetime:
        day = local_midnight(p, BERLIN)
        day = day - timedelta(days=day.weekday()) if granularity == "week" else day.replace(day=1)
        return datetime.combine(day.date(), datetime.min.time(), BERLIN)
    assert_series_matches(series, items, bucket)


def test_half_hour_zone_days_and_hours_are_exact(store):
    """Asia/Kolkata (+05:30): day 2026-11-01 holds every event from 2026-10-31T18:30Z to 2026-11-01T18:30Z."""
    request = parse_request("key", "key-b", "2026-10-25", "2026-11-08", "Asia/Kolkata")
    series = store.queries.series(request)
    assert series.buckets[0].start.isoformat() == "2026-10-25T00:00:00+05:30"
    start, end = datetime(2026, 10, 25, tzinfo=KOLKATA), datetime(2026, 11, 8, tzinfo=KOLKATA)
    items = select(store.ledger, "key", "key-b", start, end)
    assert {p.window.astimezone(KOLKATA).minute for p in items} == {0, 15, 30, 45}  # the day edge is tested
    assert_series_matches(series, items, lambda p: local_midnight(p, KOLKATA))
    hourly = store.queries.series(parse_request("key", "key-b", "2026-11-01", "2026-11-02", "Asia/Kolkata", "hour"))
    assert len(hourly.buckets) == 24 and hourly.buckets[0].start.isoformat() == "2026-11-01T00:00:00+05:30"
    hour_items = select(store.ledger, "key", "key-b", datetime(2026, 11, 1, tzinfo=KOLKATA),
                        datetime(2026, 11, 2, tzinfo=KOLKATA))
    assert_series_matches(hourly, hour_items, lambda p: p.window.astimezone(KOLKATA).replace(minute=0))


def test_the_issues_kolkata_example_counts_three_requests(clickhouse):
    """Events at 2026-11-20T18:45Z (00:15 IST on the 21st), 2026-11-21T10:00Z and 2026-11-21T18:20Z (23:50 IST):
    the IST day 2026-11-21 has 3 requests (per UTC hour it had 2)."""
    events = [{"request_id": f"i-{n}", "api_key_id": "k-ist", "model": "gpt-4o", "timestamp": ts, "input_tokens": 1,
               "output_tokens": 1}
              for n, ts in enumerate((1795200300000, 1795255200000, 1795285200000))]
    write_events(clickhouse, events, 1795348800000)
    day = UsageQueries(clickhouse).summary(parse_request("key", "k-ist", "2026-11-21", "2026-11-22", "Asia/Kolkata"))
    assert day.totals.requests == 3


@pytest.mark.parametrize("tz", ["Europe/Berlin", "Asia/Kolkata"])
def test_peak_hours_count_requests_per_local_hour(store, tz):
    zone = ZoneInfo(tz)
    peak = store.queries.peak_hours(parse_request("key", "key-a", "2026-10-20", "2026-11-10", tz))
    assert [h.hour for h in peak.hours] == list(range(24))
    start, end = datetime(2026, 10, 20, tzinfo=zone), datetime(2026, 11, 10, tzinfo=zone)
    items = select(store.ledger, "key", "key-a", start, end)
    expected = bucketed(items, lambda p: p.window.astimezone(zone).hour)
    assert [(h.requests, h.total_tokens) for h in peak.hours] == [
        (len(expected.get(h, [])), sums(expected.get(h, []))["total_tokens"]) for h in range(24)]


def test_a_known_key_without_usage_in_the_range_says_so(store):
    request = parse_request("key", "key-c", "2026-11-01", "2026-11-08")
    summary, series = store.queries.summary(request), store.queries.series(request)
    assert not summary.status.has_usage and summary.status.state == "no_requests_in_period"
    assert "no requests in this period" in summary.status.message
    assert summary.totals.requests == 0 and summary.totals.avg_tokens_per_request is None
    assert summary.totals.output_input_ratio is None and summary.totals.total_cost == 0
    assert len(series.buckets) == 7 and not series.status.has_usage
    assert store.queries.models(request).models == ()


def test_an_unknown_key_is_told_apart_from_an_idle_one(store):
    request = parse_request("key", "key-never-seen", "2026-10-20", "2026-11-10")
    for result in (store.queries.summary(request), store.queries.models(request), store.queries.peak_hours(request)):
        assert result.status.state == "unknown" and not result.status.has_usage
        assert "unknown key" in result.status.message


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("scope,scope_id,granularity", [("key", "key-a", "day"), ("org", "org-1", "hour")])
def test_csv_rows_and_totals_match_the_summary_exactly(store, scope, scope_id, granularity):
    request = parse_request(scope, scope_id, "2026-10-24", "2026-10-27", "Europe/Berlin", granularity)
    out = io.StringIO(newline="")
    stats = write_csv(store.queries, request, out)
    rows = read_csv(out.getvalue())
    assert tuple(rows[0]) == CSV_COLUMNS and stats.rows == len(rows)
    totals = store.queries.summary(request).totals
    for column in ("requests", "error_requests", "unpriced_requests", *TOKEN_FIELDS):
        assert sum(int(r[column]) for r in rows) == getattr(totals, column)
    for column in ("input_cost", "output_cost", "total_cost"):
        assert all("e" not in r[column].lower() for r in rows)
        assert sum(Decimal(r[column]) for r in rows) == getattr(totals, column)
    units, unit_costs = defaultdict(int), defaultdict(Decimal)
    for r in rows:
        for name, value in (pair.split("=") for pair in r["units"].split(";") if pair):
            units[name] += int(value)
        row_costs = [Decimal(pair.split("=")[1]) for pair in r["unit_costs"].split(";") if pair]
        assert sum(row_costs) == Decimal(r["total_cost"])  # each row's unit costs add up to its total
        for name, value in (pair.split("=") for pair in r["unit_costs"].split(";") if pair):
            unit_costs[name] += Decimal(value)
    assert dict(units) == totals.units and dict(unit_costs) == totals.unit_costs and totals.units
    start, end = datetime(2026, 10, 24, tzinfo=BERLIN), datetime(2026, 10, 27, tzinfo=BERLIN)
    zone_bucket = (lambda p: local_midnight(p, BERLIN)) if granularity == "day" else (lambda p: p.hour)
    expected = bucketed(select(store.ledger, scope, scope_id, start, end),
                        lambda p: (zone_bucket(p).astimezone(BERLIN).isoformat(), p.event["api_key_id"],
                                   p.event["model"], p.event["provider"]))
    assert {(r["bucket_start"], r["api_key_id"], r["model"], r["provider"]) for r in rows} == set(expected)
    for r in rows:
        want = sums(expected[(r["bucket_start"], r["api_key_id"], r["model"], r["provider"])])
        assert int(r["requests"]) == want["requests"] and Decimal(r["total_cost"]) == want["total_cost"]
        assert (r["price_version"] == "") == (r["model"] == "my-private-model")
        assert r["price_version"].startswith("genai-prices") or not r["price_version"]


def fill_a_year_of_hours(client, key: str, models: int = 3) -> int:
    """8784 hours (2024 is a leap year) x models rows, written straight into rollups (not via the writer:
    this is about volume, the writer's exactness is covered above)."""
    client.command(f"""
        INSERT INTO rollups (kind, api_key_id, hour, model, provider, price_version, requests, input_tokens,
                             output_tokens, input_cost, output_cost, total_cost)
        SELECT 'usage', '{key}', toDateTime('2024-01-01 00:00:00', 'UTC') + intDiv(number, {models}) * 3600,
               concat('model-', toString(number % {models})), 'acme', 'v1', 1 + number % 5, 1000 + number % 997,
               10 + number % 13, toDecimal128('0.000001234567890123456789', 24) * (number % 7) AS i,
               toDecimal128('0.000000000000000000000001', 24) * (number % 11) AS o, i + o
        FROM numbers({8784 * models})""")
    return 8784 * models


class CountingSink(io.TextIOBase):
    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def traced_export(queries: UsageQueries, request, block_rows: int):
    sink = CountingSink()
    tracemalloc.start()
    try:
        stats = write_csv(queries, request, sink, block_rows=block_rows)
        return stats, tracemalloc.get_traced_memory()[1], sink.chars
    finally:
        tracemalloc.stop()


def test_a_year_of_hourly_csv_streams_in_blocks_with_constant_memory(clickhouse):
    rows = fill_a_year_of_hours(clickhouse, "key-year")
    fill_a_year_of_hours(clickhouse, "key-other", models=1)
    queries = UsageQueries(clickhouse)
    year = parse_request("key", "key-year", "2024-01-01", "2025-01-01", granularity="hour")
    quarter = parse_request("key", "key-year", "2024-01-01", "2024-04-01", granularity="hour")
    assert year.bucket_count() == 8784
    stats, year_peak, chars = traced_export(queries, year, block_rows=1024)
    assert stats.rows == rows and stats.blocks >= rows // 1024
    _, quarter_peak, _ = traced_export(queries, quarter, block_rows=1024)
    # Four times the rows, the same peak: memory follows the block size, not the range.
    assert year_peak < 1.5 * quarter_peak, (year_peak, quarter_peak, chars)
    series = queries.series(year)
    assert len(series.buckets) == 8784
    assert sum(b.requests for b in series.buckets) == queries.summary(year).totals.requests


def test_unpriced_models_are_listed_with_their_request_counts(store):
    def every_key(start: str, end: str, tz: str = "UTC"):
        return parse_request("key", "*", start, end, tz)

    answer = store.queries.unpriced(every_key("2026-10-20", "2026-11-10"))
    unpriced = [p for p in store.ledger if p.unpriced]
    assert unpriced  # my-private-model has no price anywhere
    expected = defaultdict(list)
    for p in unpriced:
        expected[(p.event["model"], p.event["provider"])].append(p)
    assert [(m.model, m.provider, m.requests, m.keys) for m in answer.models] == [
        (model, provider, len(items), len({p.event["api_key_id"] for p in items}))
        for (model, provider), items in sorted(expected.items(), key=lambda kv: -len(kv[1]))]
    [model] = answer.models
    assert model.first_window == min(p.window for p in unpriced) and model.last_window == max(p.window for p in unpriced)
    assert not answer.truncated
    # the range follows the same rule as every answer: a stored window counts when it starts inside it
    week = store.queries.unpriced(every_key("2026-10-27", "2026-11-03", "Europe/Berlin"))
    start, end = datetime(2026, 10, 27, tzinfo=BERLIN), datetime(2026, 11, 3, tzinfo=BERLIN)
    assert week.models[0].requests == sum(1 for p in unpriced if start <= p.window < end)
    assert store.queries.unpriced(every_key("2025-01-01", "2025-02-01")).models == ()
