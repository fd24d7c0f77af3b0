"""The ClickHouse side of a flush, on real embedded ClickHouse: exact sums, atomic parts, idempotent retries,
fencing between writers, and the request-id store the dedup relies on."""

from __future__ import annotations

import csv
import io
import json
import random
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Context, Decimal

import pytest
from genai_prices import Usage, calc_price

from pipeline.contract import ContractDecoder
from pipeline.measures import Counts, Dimensions, costs_by_unit
from pipeline.metering.dedup import SeenRequests
from pipeline.metering.failpoints import Failpoints
from pipeline.migrations import Migrator, discover
from pipeline.metering.pricing import Cost, PriceBook
from pipeline.metering.rollup import DUPLICATE, Outcome, RawMessage, RequestKey, Rollup, RollupBuilder, TimeBounds
from pipeline.metering.sink import NO_PROGRESS, FencedError, FlushRange, RollupWriter
from pipeline.usage.export import decimal_text, write_csv
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_request

pytestmark = pytest.mark.clickhouse

NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
BOUNDS = TimeBounds(NOW_MS, 7 * 86_400_000, 300_000, 86_400_000)
MODELS = [("gpt-4o", "openai"), ("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-pro", "google"),
          ("my-private-model", "")]
TOPIC = "usage"


def make_events(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        model, provider = rng.choice(MODELS)
        input_tokens = rng.choice([rng.randint(0, 3000), rng.randint(190_000, 210_000)])
        output_tokens = rng.randint(0, 2000)
        cache_read = rng.randint(0, input_tokens // 2)
        events.append({
            "request_id": f"req-{seed}-{i}", "api_key_id": f"key-{rng.randint(0, 9)}", "model": model,
            "provider": provider, "timestamp": NOW_MS - rng.randint(0, 30 * 3600_000),
            "input_tokens": input_tokens, "output_tokens": output_tokens, "cache_read_tokens": cache_read,
            "cache_write_tokens": rng.randint(0, input_tokens - cache_read),
            "reasoning_tokens": rng.randint(0, output_tokens), "status": rng.choice(["ok", "ok", "error"]),
        })
        hour_start = events[-1]["timestamp"] // 3_600_000 * 3_600_000
        if i % 17 == 0:  # an hour's first millisecond
            events[-1]["timestamp"] = hour_start
        elif i % 19 == 0 and hour_start + 3_600_000 <= NOW_MS:  # an hour's last millisecond
            events[-1]["timestamp"] = hour_start + 3_599_999
    return events


def ledger(events: list[dict]) -> dict:
    """Expected usage_hourly sums, priced event by event with genai-prices itself (not our Rate code)."""
    totals: dict = defaultdict(lambda: defaultdict(Decimal))
    for e in events:
        hour = datetime.fromtimestamp(e["timestamp"] // 3_600_000 * 3600, UTC).replace(tzinfo=None)
        row = totals[(e["api_key_id"], e["model"], hour)]
        row["requests"] += 1
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens"):
            row[name] += e[name]
        try:
            price = calc_price(Usage(input_tokens=e["input_tokens"], output_tokens=e["output_tokens"],
                                     cache_read_tokens=e["cache_read_tokens"],
                                     cache_write_tokens=e["cache_write_tokens"],
                                     output_reasoning_tokens=e["reasoning_tokens"]),
                               e["model"], provider_id=e["provider"] or None,
                               genai_request_timestamp=datetime.fromtimestamp(e["timestamp"] / 1000, UTC))
            row["total_cost"] += price.total_price
        except LookupError:
            row["unpriced_requests"] += 1
    return {key: dict(value) for key, value in totals.items()}


def stored(client) -> dict:
    rows = client.query(
        "SELECT api_key_id, model, hour, sum(requests), sum(unpriced_requests), sum(input_tokens), "
        "sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), "
        "sum(total_cost) FROM usage_hourly GROUP BY api_key_id, model, hour").result_rows
    out = {}
    for key, model, hour, req, unpriced, inp, outp, cr, cw, rs, cost in rows:
        row = {"requests": req, "input_tokens": inp, "output_tokens": outp, "cache_read_tokens": cr,
               "cache_write_tokens": cw, "reasoning_tokens": rs}
        if unpriced:
            row["unpriced_requests"] = unpriced
        if cost:
            row["total_cost"] = cost
        out[(key, model, hour)] = row
    return out


def flush_of(events: list[dict], first_offset: int = 0, seen: SeenRequests | None = None, bounds=BOUNDS):
    messages = [RawMessage(first_offset + i, e["api_key_id"].encode(), json.dumps(e).encode())
                for i, e in enumerate(events)]
    draft = RollupBuilder(ContractDecoder(), PriceBook()).draft(messages, bounds, seen or SeenRequests())
    return messages, draft


def write(writer: RollupWriter, events, first_offset=0, expected=NO_PROGRESS, partition=0):
    messages, draft = flush_of(events, first_offset)
    rollup = draft.finish(set())
    flush = FlushRange(partition, first_offset, messages[-1].offset, expected)
    encoded = writer.encode(flush, rollup)
    writer.write_request_ids(encoded)
    return writer.commit(flush, encoded), rollup, flush


def new_writer(client) -> RollupWriter:
    return RollupWriter(client, TOPIC, 7 * 86400, Failpoints())


def test_migrations_apply_twice_and_are_recorded(clickhouse):
    assert Migrator(clickhouse).apply() == []
    ids = [row[0] for row in clickhouse.query("SELECT id FROM meterline_migrations ORDER BY id").result_rows]
    assert ids == [m.id for m in discover()] and ids[:2] == ["0001", "0002"]


def test_flush_lands_exactly_with_costs_priced_at_each_events_time(clickhouse):
    events = make_events(3000)
    landed, rollup, _ = write(new_writer(clickhouse), events)
    assert landed is True
    expected = ledger(events)
    assert stored(clickhouse) == expected
    assert any("unpriced_requests" in row for row in expected.values())
    assert new_writer(clickhouse).progress(0) == 2999
    outcomes = clickhouse.query("SELECT outcome, reason, events FROM ingest_outcomes").result_rows
    assert outcomes == [("counted", "", 3000)]


def test_input_and_output_cost_add_up_to_total_per_row(clickhouse):
    write(new_writer(clickhouse), make_events(500))
    rows = clickhouse.query("SELECT input_cost, output_cost, total_cost FROM usage_hourly").result_rows
    assert rows and all(i + o == t for i, o, t in rows)
    assert clickhouse.query("SELECT toTypeName(sum(total_cost)) FROM usage_hourly").result_rows == [
        ("Decimal(38, 24)",)]


def test_a_retried_commit_never_counts_twice(clickhouse):
    writer = new_writer(clickhouse)
    events = make_events(200)
    _, rollup, flush = write(writer, events)
    assert writer.commit(flush, writer.encode(flush, rollup)) is False  # the earlier attempt landed
    assert stored(clickhouse) == ledger(events)


def test_a_second_writer_with_a_stale_view_is_fenced(clickhouse):
    a, b = new_writer(clickhouse), new_writer(clickhouse)
    first = make_events(100, seed=1)
    write(a, first)
    with pytest.raises(FencedError) as fence:
        write(b, make_events(150, seed=1))  # b read the same log further, believing the partition empty
    assert fence.value.found == 99
    assert stored(clickhouse) == ledger(first)


def test_the_progress_fence_stops_a_writer_whose_token_differs(clickhouse):
    """A counted 0..99; B believes the progress is 49 and flushes 50..149: its first offset differs, so the
    insert token would let it through; only the progress check stops it."""
    a, b = new_writer(clickhouse), new_writer(clickhouse)
    first = make_events(100, seed=1)
    write(a, first)
    with pytest.raises(FencedError) as fence:
        write(b, make_events(100, seed=2), first_offset=50, expected=49)
    assert (fence.value.expected, fence.value.found) == (49, 99)
    assert stored(clickhouse) == ledger(first)
    assert clickhouse.query("SELECT sum(requests) FROM usage_hourly").result_rows[0][0] == 100


def test_request_ids_are_tagged_with_their_flushs_last_offset(clickhouse):
    """Ids are trusted once the progress reaches the flush's LAST offset: tagged with its first, the ids of a
    flush that died before its commit would be trusted as soon as anything beyond that first offset landed."""
    write(new_writer(clickhouse), make_events(10, seed=8), first_offset=40)
    assert clickhouse.query("SELECT DISTINCT batch_end_offset FROM dedup_keys").result_rows == [(49,)]


def test_a_flush_ending_where_progress_already_is_has_landed(clickhouse):
    """Offsets are immutable log positions: progress at the flush's last offset means every one of them
    is counted, whoever wrote it."""
    write(new_writer(clickhouse), make_events(100, seed=1))
    landed, _, _ = write(new_writer(clickhouse), make_events(100, seed=1))
    assert landed is False
    assert stored(clickhouse) == ledger(make_events(100, seed=1))


def test_the_insert_token_fences_a_writer_that_passed_the_progress_check_too(clickhouse):
    """Both writers read progress before either inserts; the token (topic/partition/first offset) drops
    the later insert, and its read-back reports the fence."""
    a = new_writer(clickhouse)
    first = make_events(100, seed=1)
    write(a, first)

    class RacingWriter(RollupWriter):
        calls = 0

        def progress(self, partition):
            self.calls += 1
            return NO_PROGRESS if self.calls == 1 else super().progress(partition)

    with pytest.raises(FencedError):
        write(RacingWriter(clickhouse, TOPIC, 7 * 86400, Failpoints()), make_events(150, seed=1))
    assert stored(clickhouse) == ledger(first)


def test_one_flush_is_one_part_even_when_large(clickhouse):
    clickhouse.command("SYSTEM STOP MERGES rollups")
    events = [dict(e, api_key_id=f"key-{i}") for i, e in enumerate(make_events(120_000, seed=3))]
    write(new_writer(clickhouse), events)
    parts = clickhouse.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                             "AND table = 'rollups' AND active").result_rows[0][0]
    assert parts == 1
    assert clickhouse.query("SELECT sum(requests) FROM usage_hourly").result_rows[0][0] == 120_000


def test_request_ids_count_only_once_their_flush_committed(clickhouse):
    writer = new_writer(clickhouse)
    events = make_events(50, seed=4)
    messages, draft = flush_of(events)
    rollup = draft.finish(set())
    flush = FlushRange(0, 0, 49, NO_PROGRESS)
    encoded = writer.encode(flush, rollup)
    writer.write_request_ids(encoded)  # ...and the worker dies before commit
    requests = [RequestKey(e["api_key_id"], e["request_id"]) for e in events]
    ids = [request.request_id for request in requests]
    assert writer.confirm_seen(0, writer.progress(0), requests) == set()
    assert len(writer.load_seen(0, writer.progress(0), 0)) == 0
    writer.commit(flush, encoded)
    other_key = [RequestKey("another-key", request.request_id) for request in requests[:5]]
    assert writer.confirm_seen(0, writer.progress(0), requests + other_key + [RequestKey("k", "other")]) \
        == set(requests)  # the same request id under another key is another request
    seen = writer.load_seen(0, writer.progress(0), 0)
    assert len(seen) == 50
    from pipeline.metering.dedup import request_id_hashes
    assert seen.maybe_seen(request_id_hashes(ids)).all()
    assert writer.confirm_seen(1, 49, requests) == set()  # scoped to the partition
    recent = writer.load_seen(0, 49, (NOW_MS - 3600_000) // 3_600_000)
    assert 0 < len(recent) < 50  # only ids whose event hour is within the horizon


def test_ids_recorded_before_the_request_scope_keep_refusing_their_id(clickhouse):
    """Rows of dedup_keys written before migration 0005 carry no api_key_id: any key's repeat of that id is
    still a duplicate until the row expires (the identity they were counted under)."""
    writer = new_writer(clickhouse)
    write(writer, make_events(10, seed=9))
    clickhouse.command("INSERT INTO dedup_keys (kafka_topic, kafka_partition, request_id, hour, batch_end_offset, "
                       "expires_at) VALUES ('usage', 0, 'legacy-1', now(), 5, now() + 86400)")
    assert writer.confirm_seen(0, 9, [RequestKey("key-3", "legacy-1"), RequestKey("key-3", "new-1")]) \
        == {RequestKey("key-3", "legacy-1")}


def test_a_flush_records_how_fresh_its_partition_is_and_an_idle_mark_never_moves_progress(clickhouse):
    writer = new_writer(clickhouse)
    messages, draft = flush_of(make_events(5, seed=10))
    flush = FlushRange(0, 0, 4, NO_PROGRESS, counted_through_ms=NOW_MS - 1234)
    encoded = writer.encode(flush, draft.finish(set()))
    writer.write_request_ids(encoded)
    writer.commit(flush, encoded)
    fresh = "SELECT last_offset, toUnixTimestamp64Milli(counted_through) FROM ingest_progress"
    assert clickhouse.query(fresh).result_rows == [(4, NOW_MS - 1234)]
    assert writer.record_freshness(0, 4, NOW_MS + 500) is True
    assert clickhouse.query(fresh).result_rows == [(4, NOW_MS + 500)]
    assert writer.record_freshness(0, 3, NOW_MS + 900) is False  # someone else's progress: no claim
    assert clickhouse.query(fresh).result_rows == [(4, NOW_MS + 500)]


def test_duplicates_confirmed_by_clickhouse_are_not_counted_again(clickhouse):
    writer = new_writer(clickhouse)
    events = make_events(100, seed=5)
    write(writer, events)
    retries = [dict(e) for e in events[:30]]
    fresh = make_events(20, seed=6)
    seen = writer.load_seen(0, 99, 0)
    messages, draft = flush_of(retries + fresh, first_offset=100, seen=seen)
    assert set(draft.maybe_seen) >= {RequestKey(e["api_key_id"], e["request_id"]) for e in retries}
    confirmed = writer.confirm_seen(0, 99, draft.maybe_seen)
    rollup = draft.finish(confirmed)
    flush = FlushRange(0, 100, messages[-1].offset, 99)
    encoded = writer.encode(flush, rollup)
    writer.write_request_ids(encoded)
    writer.commit(flush, encoded)
    assert stored(clickhouse) == ledger(events + fresh)
    outcomes = dict(((o, r), n) for o, r, n in clickhouse.query(
        "SELECT outcome, reason, events FROM ingest_outcomes").result_rows)
    assert outcomes == {("counted", ""): 120, ("duplicate", ""): 30}


def test_usage_hourly_reads_use_the_primary_key(clickhouse):
    write(new_writer(clickhouse), make_events(100))
    plan = "\n".join(row[0] for row in clickhouse.query(
        "EXPLAIN indexes = 1 SELECT sum(requests) FROM usage_hourly WHERE api_key_id = 'key-1' "
        "AND hour >= toDateTime('2026-11-24 00:00:00')").result_rows)
    assert "PrimaryKey" in plan and "api_key_id" in plan


def test_confirming_more_requests_than_one_query_holds_asks_for_every_one(clickhouse):
    """confirm_seen asks in chunks of 20,000 request ids: a counted id in the second chunk is still found."""
    writer = new_writer(clickhouse)
    events = make_events(3, seed=11)
    write(writer, events)
    counted = RequestKey(events[2]["api_key_id"], events[2]["request_id"])
    unknown = [RequestKey("key-x", f"never-{i}") for i in range(20_000)]
    assert writer.confirm_seen(0, 2, [*unknown, counted]) == {counted}


def test_a_partition_with_nothing_committed_is_at_the_offset_before_the_first(clickhouse):
    """-1, so the next offset to read is 0 (the worker resumes a partition at its progress + 1)."""
    writer = new_writer(clickhouse)
    assert writer.progress(0) == NO_PROGRESS == -1
    assert writer.record_freshness(0, -1, NOW_MS) is True  # an idle, empty partition is fresh and still at -1
    assert writer.progress(0) == -1


def test_per_unit_maps_sum_key_by_key_across_flushes_and_merges(clickhouse):
    """units and unit_costs are SimpleAggregateFunction(sumMap, Map(...)): two flushes of the same group, merged
    by the AggregatingMergeTree, hold each unit's sum; the view's sumMap agrees before and after the merge."""
    base = {"api_key_id": "key-maps", "model": "claude-sonnet-4-5", "provider": "anthropic", "timestamp": NOW_MS,
            "input_tokens": 1000, "output_tokens": 10, "cache_write_tokens": 600}
    first = [{**base, "request_id": "m1", "usage": {"cache_write_1h_tokens": 400, "web_searches": 1}},
             {**base, "request_id": "m2"}]
    second = [{**base, "request_id": "m3", "usage": {"cache_write_1h_tokens": 100, "cache_write_5m_tokens": 500}}]
    writer = new_writer(clickhouse)
    assert write(writer, first)[0] and write(writer, second, first_offset=2, expected=1)[0]
    sql = ("SELECT sumMap(units), sumMap(unit_costs), sum(input_cost), sum(output_cost), sum(total_cost), count() "
           "FROM rollups WHERE kind = 'usage' AND api_key_id = 'key-maps'")
    view = ("SELECT sumMap(units), sumMap(unit_costs), sum(total_cost) FROM usage_hourly "
            "WHERE api_key_id = 'key-maps'")
    units, costs, input_cost, output_cost, total, parts = clickhouse.query(sql).result_rows[0]
    assert parts == 2 and units == {"cache_write_1h_tokens": 500, "cache_write_5m_tokens": 500, "web_searches": 1}
    # $3/M input (3 x 400 uncached), $3.75/M writes that are not 1-hour ones (1800 - 500), $6/M 1-hour writes
    # (500), $15/M output (30), $10 per 1,000 searches (1); the remainders (uncached input, output) are not
    # stored but derived from the sides' costs
    assert costs == {"cache_write_tokens": Decimal("0.004875"), "cache_write_1h_tokens": Decimal("0.003"),
                     "web_searches": Decimal("0.01")}
    assert costs_by_unit(costs, input_cost, output_cost) == {
        "cache_write_1h_tokens": Decimal("0.003"), "cache_write_tokens": Decimal("0.004875"),
        "input_tokens": Decimal("0.0036"), "output_tokens": Decimal("0.00045"), "web_searches": Decimal("0.01")}
    assert input_cost + output_cost == total
    before = clickhouse.query(view).result_rows
    clickhouse.command("OPTIMIZE TABLE rollups FINAL")
    assert clickhouse.query(sql).result_rows[0] == (units, costs, input_cost, output_cost, total, 1)  # one row
    assert clickhouse.query(view).result_rows == before


def test_a_duplicate_taken_back_out_leaves_no_unit_behind(clickhouse):
    """A retried event with a ``usage`` object, confirmed as a duplicate by ClickHouse, is taken back out of its
    group: the second flush stores a zero for its unit, and readers show only the first flush's units and costs."""
    base = {"api_key_id": "key-dup", "model": "claude-sonnet-4-5", "provider": "anthropic", "timestamp": NOW_MS,
            "input_tokens": 100, "output_tokens": 10}
    first = {**base, "request_id": "d1", "usage": {"web_searches": 2}}
    writer = new_writer(clickhouse)
    write(writer, [first])
    messages, draft = flush_of([first, {**base, "request_id": "d2"}], first_offset=1,
                               seen=writer.load_seen(0, 0, 0))
    rollup = draft.finish(writer.confirm_seen(0, 0, draft.maybe_seen))
    assert rollup.outcomes[Outcome(DUPLICATE)] == 1
    flush = FlushRange(0, 1, messages[-1].offset, 0)
    encoded = writer.encode(flush, rollup)
    writer.write_request_ids(encoded)
    assert writer.commit(flush, encoded)
    stored_maps = clickhouse.query("SELECT units FROM rollups WHERE kind = 'usage' AND api_key_id = 'key-dup' "
                                   "ORDER BY requests").result_rows
    assert stored_maps == [({"web_searches": 0},), ({"web_searches": 2},)]  # the zero is stored...
    totals = UsageQueries(clickhouse).summary(parse_request("key", "key-dup", "2026-11-25", "2026-11-26")).totals
    assert totals.requests == 2 and totals.units == {"web_searches": 2}  # ...and never shown
    # $3/M input, $15/M output (two requests), $10 per 1,000 searches (the first request's two only)
    assert totals.unit_costs == {"input_tokens": Decimal("0.0006"), "output_tokens": Decimal("0.0003"),
                                 "web_searches": Decimal("0.02")}
    assert sum(totals.unit_costs.values()) == totals.total_cost


def test_per_unit_costs_travel_as_integer_units_and_land_exactly(clickhouse):
    """The writer sends each unit's cost as an Int128 count of 1e-24 USD in the EPHEMERAL ``unit_cost_units``
    map; ClickHouse turns it into ``unit_costs`` Decimal(38, 24) bit for bit: entries summing to the largest
    Decimal(38, 24), a negative entry, and entries that sum to zero across flushes (never shown to readers)."""
    largest = 10**38 - 1
    group = Dimensions("key-exact", "", "", "claude-sonnet-4-5", "anthropic", NOW_MS // 900_000, "v")
    writer = new_writer(clickhouse)
    by_flush = [{"cache_write_1h_tokens": largest - 10**30 - 8, "web_searches": 12345678901234567890123,
                 "input_tokens": 7},
                {"cache_write_1h_tokens": 10**30, "web_searches": -12345678901234567890123, "output_tokens": 1}]
    for n, by_unit in enumerate(by_flush):
        counts = Counts()
        counts.requests = 1
        counts.units = [{"web_searches": 0}, {"input_audio_tokens": 5}][n]  # a zero as a take-back leaves
        output = by_unit.get("output_tokens", 0)  # a Cost's sides hold its units' costs, as pricing makes them
        rollup = Rollup(groups={group: counts}, costs={group: Cost(sum(by_unit.values()) - output, output, by_unit)})
        flush = FlushRange(0, n, n, n - 1)
        assert writer.commit(flush, writer.encode(flush, rollup))
    rows = clickhouse.query("SELECT unit_costs FROM rollups WHERE kind = 'usage' AND api_key_id = 'key-exact' "
                            "ORDER BY requests, toString(unit_costs)").result_rows
    assert sorted((row[0] for row in rows), key=str) == sorted(
        ({name: Decimal(value).scaleb(-24, Context(prec=80)) for name, value in by_unit.items()}
         for by_unit in by_flush), key=str)
    totals = UsageQueries(clickhouse).summary(parse_request("key", "key-exact", "2026-11-25", "2026-11-26")).totals
    assert totals.units == {"input_audio_tokens": 5}
    assert totals.unit_costs == {"cache_write_1h_tokens": Decimal(f"{largest - 8}e-24"),
                                 "input_tokens": Decimal("7e-24"), "output_tokens": Decimal("1e-24")}
    assert totals.total_cost == Decimal(f"{largest}e-24")  # the largest total a row can hold


def test_plain_events_store_no_per_unit_cost_and_read_back_exactly(clickhouse):
    """A group of events with only input and output tokens stores an empty ``unit_costs`` map (the write path
    costs what it cost before the per-unit costs), and readers still show both remainders' costs exactly."""
    events = [{"request_id": f"p{i}", "api_key_id": "key-plain", "model": "gpt-4o", "provider": "openai",
               "timestamp": NOW_MS, "input_tokens": 1000 + i, "output_tokens": 10 * i} for i in range(1, 4)]
    write(new_writer(clickhouse), events)
    stored = clickhouse.query("SELECT unit_costs FROM rollups WHERE kind = 'usage' AND api_key_id = 'key-plain'")
    assert stored.result_rows == [({},)]
    totals = UsageQueries(clickhouse).summary(parse_request("key", "key-plain", "2026-11-25", "2026-11-26")).totals
    # $2.50/M input (3006), $10/M output (60)
    assert totals.unit_costs == {"input_tokens": Decimal("0.007515"), "output_tokens": Decimal("0.0006")}
    assert sum(totals.unit_costs.values()) == totals.total_cost


def test_rows_stored_with_and_without_remainders_read_back_exactly(clickhouse):
    """Rows written while ``unit_costs`` held the remainders (input_tokens, output_tokens) and rows written
    since, in one group and range, before and after ClickHouse merges them into one row: the API and the CSV
    show each unit's exact cost of all of them, as if every row had been written either way."""
    base = {"api_key_id": "key-mixed", "model": "claude-sonnet-4-5", "provider": "anthropic", "timestamp": NOW_MS}
    before = [{**base, "request_id": "o1", "input_tokens": 1000, "output_tokens": 50, "cache_read_tokens": 300,
               "cache_write_tokens": 200, "usage": {"cache_write_1h_tokens": 150, "web_searches": 3}},
              {**base, "request_id": "o2", "input_tokens": 400, "output_tokens": 40}]
    since = [{**base, "request_id": "n1", "input_tokens": 900, "output_tokens": 70, "cache_read_tokens": 100},
             {**base, "request_id": "n2", "input_tokens": 500, "output_tokens": 20, "cache_write_tokens": 200,
              "usage": {"cache_write_1h_tokens": 200, "web_searches": 1}}]
    writer = new_writer(clickhouse)
    messages, draft = flush_of(before)
    old = draft.finish(set())
    # As the writer stored them before: every unit's cost in the map, the remainders included.
    old.costs.update({group: Cost(cost.input_units, cost.output_units, cost.all_units())
                      for group, cost in old.costs.items()})
    flush = FlushRange(0, 0, messages[-1].offset, NO_PROGRESS)
    assert writer.commit(flush, writer.encode(flush, old))
    assert write(writer, since, first_offset=2, expected=1)[0]
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for rollup in (old, flush_of(since, first_offset=2)[1].finish(set())):
        for cost in rollup.costs.values():
            for name, units in cost.all_units().items():
                expected[name] += Decimal(units).scaleb(-24, Context(prec=80))
    # By hand: $3/M uncached input (1000-300-200, 400, 900-100, 500-200), $0.30/M cache reads (300, 100),
    # $3.75/M 5-minute writes (50), $6/M 1-hour writes (350), $15/M output (180), $10 per 1,000 searches (4)
    assert dict(expected) == {"input_tokens": Decimal("0.006"), "cache_read_tokens": Decimal("0.00012"),
                              "cache_write_tokens": Decimal("0.0001875"), "cache_write_1h_tokens": Decimal("0.0021"),
                              "output_tokens": Decimal("0.0027"), "web_searches": Decimal("0.04")}
    stored = clickhouse.query("SELECT sumMap(unit_costs) FROM rollups WHERE kind = 'usage' "
                              "AND api_key_id = 'key-mixed'").result_rows[0][0]
    assert Decimal(0) < stored["input_tokens"] < expected["input_tokens"]  # the old rows' part only
    request = parse_request("key", "key-mixed", "2026-11-25", "2026-11-26", "UTC", "hour")
    for merged in (False, True):
        if merged:
            clickhouse.command("OPTIMIZE TABLE rollups FINAL")
            assert clickhouse.query("SELECT count() FROM rollups WHERE kind = 'usage' AND api_key_id = 'key-mixed'"
                                    ).result_rows == [(1,)]
        totals = UsageQueries(clickhouse).summary(request).totals
        assert totals.unit_costs == dict(sorted(expected.items())) and totals.requests == 4
        assert sum(totals.unit_costs.values()) == totals.total_cost
        [model] = UsageQueries(clickhouse).models(request).models
        assert model.totals.unit_costs == totals.unit_costs
        out = io.StringIO(newline="")
        write_csv(UsageQueries(clickhouse), request, out)
        [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert row["unit_costs"] == ";".join(f"{name}={decimal_text(value)}" for name, value in
                                             sorted(expected.items()))
