"""The pure core of the write path, fast: the Meter with an in-memory store (tests/support/memory_store.py)
that keeps ClickHouse's rules (fence, insert token, ids trusted up to the progress).

Every expected number comes from an independent reference (genai-prices' own calc_price, hand arithmetic),
never from meterline's code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest
from genai_prices import Usage, calc_price
from prometheus_client import CollectorRegistry

from pipeline.config import RollupSettings
from pipeline.contract import ContractDecoder
from pipeline.measures import COUNTED, Counts
from pipeline.metering.dedup import SeenRequests, request_id_hashes
from pipeline.metering.meter import Meter
from pipeline.metering.pricing import USD_DECIMALS, PriceBook
from pipeline.metering.rollup import RawMessage, RollupBuilder, TimeBounds
from pipeline.metering.sink import FencedError
from pipeline.metrics import PipelineMetrics
from support.memory_store import InlineRunner, MemoryStore

HOUR = 3_600_000
QUARTER = 900_000
NOW = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
SETTINGS = RollupSettings()  # 7 d lateness, 5 min clock skew, 24 h dedup horizon


def event(request_id: str, ts_ms: int, **fields) -> dict:
    return {"request_id": request_id, "api_key_id": "k1", "model": "gpt-4o", "timestamp": ts_ms,
            "input_tokens": 100, "output_tokens": 10, **fields}


def messages(*events: dict | list, first_offset: int = 0) -> list[RawMessage]:
    out = []
    for offset, value in enumerate(events, start=first_offset):
        key = (value[0] if isinstance(value, list) else value).get("api_key_id", "k1")
        out.append(RawMessage(offset, key.encode(), json.dumps(value).encode()))
    return out


def new_meter(store: MemoryStore, clock_ms: int = NOW_MS, prices: PriceBook | None = None,
              metrics: PipelineMetrics | None = None) -> Meter:
    builder = RollupBuilder(ContractDecoder(), prices or PriceBook())
    return Meter(InlineRunner(), store, builder, SETTINGS, metrics or PipelineMetrics(CollectorRegistry()),
                 clock_ms=lambda: clock_ms)


async def flush(meter: Meter, batch: list[RawMessage], partition: int = 0):
    prepared = await meter.prepare(partition, batch)
    assert prepared is not None
    await meter.write(prepared)
    return prepared.rollup


def units(amount) -> int:
    return int(Decimal(amount).scaleb(USD_DECIMALS))


async def test_each_event_is_priced_at_its_own_time_not_at_the_flushs():
    # deepseek-chat is half price from 16:30Z to 00:30Z: an event at 10:00Z flushed at 17:00Z pays full price.
    at_ten = int(datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp() * 1000)
    store = MemoryStore()
    await flush(new_meter(store), messages(event("r1", at_ten, model="deepseek-chat", provider="deepseek",
                                                 input_tokens=1000, output_tokens=1000)))
    reference = calc_price(Usage(input_tokens=1000, output_tokens=1000), "deepseek-chat", provider_id="deepseek",
                           genai_request_timestamp=datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    total = store.totals()
    assert total["input_cost"] + total["output_cost"] == units(reference.total_price) == units("0.00137")


async def test_events_outside_the_time_bounds_are_dead_lettered_and_the_bounds_themselves_are_inside():
    oldest, newest = NOW_MS - 7 * 24 * HOUR, NOW_MS + 5 * 60_000
    store = MemoryStore()
    rollup = await flush(new_meter(store), messages(
        event("late-ok", oldest), event("too-late", oldest - 1), event("skew-ok", newest),
        event("future", newest + 1)))
    assert sorted((d.offset, d.rejection.reason) for d in rollup.dead_letters) == [
        (1, "too_late"), (3, "future_timestamp")]
    assert store.totals()["requests"] == 2
    assert +store.outcomes == {("counted", ""): 2, ("rejected", "too_late"): 1, ("rejected", "future_timestamp"): 1}


async def test_a_repeated_request_id_inside_one_flush_counts_once_with_its_first_values():
    store = MemoryStore()
    await flush(new_meter(store), messages(event("r1", NOW_MS, input_tokens=7), event("r1", NOW_MS, input_tokens=99),
                                           [event("r1", NOW_MS), event("r2", NOW_MS)]))
    total = store.totals()
    assert (total["requests"], total["input_tokens"]) == (2, 107)
    assert store.outcomes[("duplicate", "")] == 2


async def test_a_repeat_of_an_earlier_flush_is_confirmed_and_not_counted_even_since_the_filters_last_merge():
    store = MemoryStore()
    meter = new_meter(store)
    await flush(meter, messages(event("a", NOW_MS), event("b", NOW_MS)))
    await flush(meter, messages(event("c", NOW_MS), first_offset=2))  # ids held in the filter's recent run
    await flush(meter, messages(event("a", NOW_MS), event("c", NOW_MS, input_tokens=1), event("d", NOW_MS),
                                first_offset=3))
    assert store.totals()["requests"] == 4
    assert store.outcomes[("duplicate", "")] == 2
    # a restarted meter rebuilds its filter from the store and still refuses them
    await flush(new_meter(store), messages(event("b", NOW_MS), event("d", NOW_MS), first_offset=6))
    assert store.totals()["requests"] == 4 and store.outcomes[("duplicate", "")] == 4


async def test_ids_older_than_the_filter_horizon_are_confirmed_in_the_store():
    old = NOW_MS - 30 * HOUR  # beyond the 24 h dedup horizon, within the 7 d lateness bound
    store = MemoryStore()
    await flush(new_meter(store), messages(event("old", old)))
    fresh = new_meter(store)  # its filter holds only the last 24 h
    assert len((await fresh.state(0)).seen) == 0
    await flush(fresh, messages(event("old", old), first_offset=1))
    assert store.totals()["requests"] == 1 and store.outcomes[("duplicate", "")] == 1


async def test_a_model_without_a_price_is_counted_and_marked_unpriced():
    store = MemoryStore()
    rollup = await flush(new_meter(store), messages(event("p", NOW_MS), event("u", NOW_MS, model="acme-private")))
    assert rollup.unpriced_requests == 1
    unpriced = store.totals(model="acme-private")
    assert (unpriced["requests"], unpriced["input_cost"], unpriced["output_cost"]) == (1, 0, 0)
    assert store.totals(model="gpt-4o")["input_cost"] > 0


async def test_a_batch_keeps_its_good_events_and_dead_letters_each_bad_one_at_its_index():
    store = MemoryStore()
    batch = [event("g1", NOW_MS), event("bad", NOW_MS, input_tokens=-1), event("g2", NOW_MS),
             event("late", NOW_MS - 8 * 24 * HOUR), event("g3", NOW_MS, cache_read_tokens=101)]
    rollup = await flush(new_meter(store), messages(batch))
    assert [(d.offset, d.rejection.index, d.rejection.reason) for d in rollup.dead_letters] == [
        (0, 1, "invalid_field"), (0, 4, "inconsistent_tokens"), (0, 3, "too_late")]
    assert json.loads(rollup.dead_letters[2].rejection.raw)["request_id"] == "late"
    assert store.totals()["requests"] == 2  # g1 and g2


async def test_gateway_costs_of_one_group_add_up():
    store = MemoryStore()
    await flush(new_meter(store), messages(event("a", NOW_MS, gateway_cost_usd="0.001"),
                                           event("b", NOW_MS, gateway_cost_usd="0.002"), event("c", NOW_MS)))
    total = store.totals()
    assert total["gateway_cost"] == Decimal("0.003") and total["gateway_cost_requests"] == 2


async def test_events_on_a_windows_first_and_last_millisecond_land_in_that_window():
    hour_start = NOW_MS - 3 * HOUR
    store = MemoryStore()
    await flush(new_meter(store), messages(event("first", hour_start), event("last", hour_start + QUARTER - 1),
                                           event("next", hour_start + QUARTER),
                                           event("hour-end", hour_start + HOUR - 1)))
    first = hour_start // QUARTER
    assert [store.totals(window=w)["requests"] for w in range(first, first + 4)] == [2, 1, 0, 1]
    assert store.totals(window=first + 4)["requests"] == 0


async def test_two_keys_may_use_the_same_request_id_and_each_counts():
    store = MemoryStore()
    meter = new_meter(store)
    await flush(meter, messages(event("r1", NOW_MS), event("r1", NOW_MS, api_key_id="k2")))
    await flush(meter, messages(event("r1", NOW_MS, api_key_id="k3"), event("r1", NOW_MS, api_key_id="k2"),
                                first_offset=2))
    assert {k: store.totals(api_key_id=k)["requests"] for k in ("k1", "k2", "k3")} == {"k1": 1, "k2": 1, "k3": 1}
    assert store.outcomes[("duplicate", "")] == 1


async def test_ids_recorded_before_the_request_scope_keep_their_old_identity():
    """dedup_keys rows from before migration 0005 have no api_key_id: they still refuse their request id."""
    from support.memory_store import StoredId
    store = MemoryStore()
    store.ids.append(StoredId(0, "", "legacy", NOW_MS // HOUR, 0))
    store.progress_of[0] = 0
    await flush(new_meter(store), messages(event("legacy", NOW_MS), event("new", NOW_MS), first_offset=1))
    assert store.totals()["requests"] == 1 and store.outcomes[("duplicate", "")] == 1


async def test_freshness_is_the_flush_time_when_caught_up_else_the_last_messages_kafka_time():
    store = MemoryStore()
    meter = new_meter(store)
    batch = [RawMessage(0, b"k1", json.dumps(event("a", NOW_MS)).encode(), NOW_MS - 5000)]
    await meter.write(await meter.prepare(0, batch))
    assert store.fresh_through[0] == NOW_MS - 5000
    batch = [RawMessage(1, b"k1", json.dumps(event("b", NOW_MS)).encode(), NOW_MS - 4000)]
    await meter.write(await meter.prepare(0, batch, caught_up=True))
    assert store.fresh_through[0] == NOW_MS
    idle = new_meter(store, clock_ms=NOW_MS + 60_000)
    await idle.mark_fresh(0)
    assert store.fresh_through[0] == NOW_MS + 60_000
    store.progress_of[0] = 7  # another owner moved on: no claim of freshness from here
    stale = new_meter(store, clock_ms=NOW_MS + 120_000)
    await stale.state(0)
    store.progress_of[0] = 8
    await stale.mark_fresh(0)
    assert store.fresh_through[0] == NOW_MS + 60_000 and stale.committed() == {}


async def test_expiry_keeps_the_ids_of_the_horizons_first_hour_and_drops_older_ones():
    for clock in (NOW_MS, NOW_MS + 30 * 60_000, NOW_MS + 59 * 60_000):  # horizon on, in, late in an hour
        meter = new_meter(MemoryStore(), clock_ms=clock)
        state = await meter.state(0)
        horizon_hour = (clock - 24 * HOUR) // HOUR
        ids = ["older", "first", "newer"]
        state.seen.add(request_id_hashes(ids), np.asarray([horizon_hour - 1, horizon_hour, horizon_hour + 1],
                                                          dtype=np.uint32))
        meter.expire_seen()
        assert list(state.seen.maybe_seen(request_id_hashes(ids))) == [False, True, True]


async def test_a_fenced_write_forgets_the_partition_and_counts_nothing():
    store = MemoryStore()
    meter = new_meter(store)
    prepared = await meter.prepare(0, messages(event("a", NOW_MS)))
    store.progress_of[0] = 5  # another worker counted this partition meanwhile
    with pytest.raises(FencedError):
        await meter.write(prepared)
    assert meter.committed() == {} and store.totals()["requests"] == 0
    assert await meter.prepare(0, messages(event("a", NOW_MS))) is None  # offsets 0..5 are counted


def test_counts_accumulate_every_declared_measure():
    """Counts.add must handle every measure in COUNTED: a new measure without its line fails here."""
    counts = Counts()
    [decoded], _ = ContractDecoder().decode(json.dumps(event(
        "r", NOW_MS, input_tokens=50, output_tokens=20, cache_read_tokens=5, cache_write_tokens=6,
        reasoning_tokens=7, status="error", gateway_cost_usd="0.1")).encode())
    counts.add(decoded)
    expected = {"requests": 1, "error_requests": 1, "input_tokens": 50, "output_tokens": 20,
                "cache_read_tokens": 5, "cache_write_tokens": 6, "reasoning_tokens": 7, "gateway_cost_requests": 1}
    assert counts.as_dict() == expected and set(expected) == {m.name for m in COUNTED}
    counts.subtract(decoded)
    assert set(counts.as_dict().values()) == {0}


def test_counts_sum_usage_units_and_take_a_duplicates_back():
    counts = Counts()
    decoder = ContractDecoder()
    [a], _ = decoder.decode(json.dumps(event("a", NOW_MS, usage={"input_audio_tokens": 40, "web_searches": 2})).encode())
    [b], _ = decoder.decode(json.dumps(event("b", NOW_MS, usage={"input_audio_tokens": 5})).encode())
    [plain], _ = decoder.decode(json.dumps(event("c", NOW_MS)).encode())
    for e in (a, b, plain):
        counts.add(e)
    assert counts.units == {"input_audio_tokens": 45, "web_searches": 2} and counts.requests == 3
    assert counts.value("input_audio_tokens") == 45 and counts.value("output_reasoning_tokens") == 0
    assert counts.value("requests") == 3 and counts.value("input_tokens") == 300
    counts.subtract(a)
    assert counts.as_dict()["units"] == {"input_audio_tokens": 5}  # zeros are left out


async def test_a_flush_writes_every_unit_and_its_cost():
    store = MemoryStore()
    meter = new_meter(store)
    usage = {"cache_write_1h_tokens": 100_000}
    rollup = await flush(meter, messages(event("u1", NOW_MS - HOUR, model="claude-sonnet-4-5", provider="anthropic",
                                               input_tokens=100_010, output_tokens=100,
                                               cache_write_tokens=100_000, usage=usage)))
    [(group, counts)] = rollup.groups.items()
    assert counts.units == usage
    cost = rollup.costs[group]
    expected = calc_price(Usage(input_tokens=100_010, cache_write_tokens=100_000, cache_write_1h_tokens=100_000,
                                output_tokens=100), "claude-sonnet-4-5", provider_id="anthropic",
                          genai_request_timestamp=datetime.fromtimestamp((NOW_MS - HOUR) / 1000, UTC)).total_price
    assert cost.total_units == units(expected) == units("0.60153")
    assert cost.all_units() == {"input_tokens": units("0.00003"), "cache_write_1h_tokens": units("0.6"),
                                "output_tokens": units("0.0015")}


def test_the_filter_finds_ids_added_since_its_last_merge_and_forgets_by_hour():
    seen = SeenRequests(request_id_hashes(["main"]), np.asarray([10], dtype=np.uint32))
    seen.add(request_id_hashes(["recent"]), np.asarray([11], dtype=np.uint32))
    assert list(seen.maybe_seen(request_id_hashes(["main", "recent", "never"]))) == [True, True, False]
    seen.expire(11)
    assert list(seen.maybe_seen(request_id_hashes(["main", "recent"]))) == [False, True]



async def test_a_flush_reports_its_events_by_outcome_and_lateness_and_the_filters_size():
    metrics = PipelineMetrics(CollectorRegistry())
    clock = NOW_MS + 58 * 60_000  # 17:58: an event of 18:01 is within the clock-skew bound, and not late
    meter = new_meter(MemoryStore(), clock_ms=clock, metrics=metrics)
    await flush(meter, messages(
        event("now", NOW_MS), event("last-hour", NOW_MS - 1), event("earlier", NOW_MS - 5 * HOUR),
        event("yesterday", NOW_MS - 20 * HOUR),
        [event("now", NOW_MS), event("bad", NOW_MS, input_tokens=-1), event("old", NOW_MS - 8 * 24 * HOUR),
         event("unpriced", NOW_MS + HOUR + 60_000, model="acme-private")]))

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("meterline_messages_consumed_total") == 5 and value("meterline_events_consumed_total") == 8
    assert (value("meterline_events_counted_total"), value("meterline_events_duplicate_total")) == (5, 1)
    assert value("meterline_events_rejected_total", reason="invalid_field") == 1
    assert value("meterline_events_rejected_total", reason="too_late") == 1
    assert value("meterline_events_rejected_total", reason="") is None  # only rejections carry a reason
    assert value("meterline_events_late_total") == 3  # hours 16:00, 12:00 and yesterday's 21:00, counted at 17:58
    assert value("meterline_events_unpriced_total") == 1
    assert value("meterline_rollup_rows_written_total") == 5  # 17:00, 16:45, 12:00, 21:00 and the unpriced 18:00
    assert value("meterline_flushes_total") == 1
    assert (value("meterline_dedup_filter_entries"), value("meterline_dedup_filter_bytes")) == (5, 5 * 12)


async def test_flush_and_write_durations_are_measured_from_their_own_starts(monkeypatch):
    """flush_seconds runs from prepare() to the end of write(); clickhouse_write_seconds covers the writes."""
    ticks = iter([10.0, 11.5, 30.0, 45.0])
    monkeypatch.setattr("pipeline.metering.meter.time.perf_counter", lambda: next(ticks))
    metrics = PipelineMetrics(CollectorRegistry())
    await flush(new_meter(MemoryStore(), metrics=metrics), messages(event("a", NOW_MS)))
    monkeypatch.undo()
    assert metrics.registry.get_sample_value("meterline_clickhouse_write_duration_seconds_sum") == 18.5
    assert metrics.registry.get_sample_value("meterline_flush_duration_seconds_sum") == 35.0


async def test_forgetting_without_partitions_drops_every_partitions_state():
    store = MemoryStore()
    meter = new_meter(store)
    await flush(meter, messages(event("a", NOW_MS)), partition=0)
    await flush(meter, messages(event("b", NOW_MS)), partition=1)
    meter.forget([1])
    assert meter.committed() == {0: 0}
    await meter.state(1)
    meter.forget()
    assert meter.committed() == {}


async def test_a_flush_not_caught_up_is_fresh_up_to_its_last_messages_kafka_time():
    store = MemoryStore()
    batch = [RawMessage(offset, b"k1", json.dumps(event(f"r{offset}", NOW_MS)).encode(), NOW_MS - 9000 + offset)
             for offset in range(3)]
    await new_meter(store).write(await new_meter(store).prepare(0, batch))
    assert store.fresh_through[0] == NOW_MS - 9000 + 2


async def test_a_restarted_meter_loads_the_ids_of_the_horizons_first_hour_and_later_ones():
    from support.memory_store import StoredId
    for clock in (NOW_MS, NOW_MS + 30 * 60_000, NOW_MS + 59 * 60_000):  # horizon on, in, late in an hour
        store = MemoryStore()
        horizon_hour = (clock - 24 * HOUR) // HOUR
        store.ids += [StoredId(0, "k1", name, hour, 0) for name, hour in
                      (("older", horizon_hour - 1), ("first", horizon_hour), ("now", clock // HOUR))]
        store.progress_of[0] = 0
        seen = (await new_meter(store, clock_ms=clock).state(0)).seen
        assert list(seen.maybe_seen(request_id_hashes(["older", "first", "now"]))) == [False, True, True]


async def test_a_prepared_flush_names_its_offsets_after_the_progress_and_the_settings_bounds():
    store = MemoryStore()
    store.progress_of[0] = 2
    prepared = await new_meter(store).prepare(0, messages(*(event(f"r{i}", NOW_MS) for i in range(6))))
    assert (prepared.flush.partition, prepared.flush.first_offset, prepared.flush.last_offset,
            prepared.flush.expected_progress, prepared.messages) == (0, 3, 5, 2, 3)
    assert prepared.bounds == TimeBounds(NOW_MS, 7 * 24 * HOUR, 5 * 60_000, 24 * HOUR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.messages = 4


async def test_the_python_work_of_every_flush_runs_on_the_meters_one_cpu_thread():
    """One thread: the decoder and the price book's cache are never used by two flushes at once."""
    threads = []

    class RecordingPriceBook(PriceBook):
        def rate_for(self, *args):
            threads.append(threading.current_thread().name)
            return super().rate_for(*args)

    meter = new_meter(MemoryStore(), prices=RecordingPriceBook())
    await asyncio.gather(*(meter.prepare(p, messages(event(f"r{p}", NOW_MS))) for p in range(4)))
    assert len(threads) == 4 and set(threads) == {"meter-cpu_0"}
