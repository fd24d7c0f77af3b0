"""The per-flush core alone (pipeline/metering/rollup.py): RollupBuilder.draft and Draft.finish with a recording
price lookup, so what each event is priced with, grouped under and dead-lettered for is seen directly.
Expected values are hand arithmetic."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest

from pipeline.contract import ContractDecoder
from pipeline.measures import Counts
from pipeline.metering.dedup import SeenRequests, request_id_hashes
from pipeline.metering.pricing import Cost
from pipeline.metering.rollup import DUPLICATE, DeadLetter, Outcome, RawMessage, RequestKey, RollupBuilder, \
    TimeBounds

HOUR = 3_600_000
NOW_MS = 1_764_000_000_000 + 17 * HOUR  # an hour's start (2025-11-25T17:00Z)
BOUNDS = TimeBounds(NOW_MS, 7 * 24 * HOUR, 300_000, 24 * HOUR)


@dataclass(frozen=True)
class FlatRate:
    """One unit of 1e-24 USD per input token and two per output token."""

    version: str

    def price(self, counts: Counts) -> Cost:
        return Cost(counts.input_tokens, 2 * counts.output_tokens)


@dataclass
class RecordingPrices:
    """A price lookup that records every call; models named ``free-*`` have no price, ``broken-*`` raise."""

    calls: list[tuple] = field(default_factory=list)

    def rate_for(self, model: str, provider: str | None, ts_ms: int, input_tokens: int) -> FlatRate | None:
        self.calls.append((model, provider, ts_ms, input_tokens))
        if model.startswith("broken"):
            raise ValueError("x" * 1000)
        return None if model.startswith("free") else FlatRate(f"sheet-{model}")


def event(request_id: str, ts_ms: int = NOW_MS, **fields) -> dict:
    return {"request_id": request_id, "api_key_id": "k1", "model": "m", "timestamp": ts_ms, "input_tokens": 100,
            "output_tokens": 10, **fields}


def message(offset: int, value) -> RawMessage:
    return RawMessage(offset, b"k1", json.dumps(value).encode())


def draft(*values, prices: RecordingPrices | None = None, seen: SeenRequests | None = None, bounds=BOUNDS):
    builder = RollupBuilder(ContractDecoder(), prices or RecordingPrices())
    return builder.draft([message(i, v) for i, v in enumerate(values)], bounds, seen or SeenRequests())


def test_each_event_is_priced_with_its_own_model_provider_time_and_input_tokens():
    prices = RecordingPrices()
    draft(event("a", NOW_MS - 5 * HOUR, provider="openai", input_tokens=7), event("b", NOW_MS - 1, provider=""),
          prices=prices)
    assert prices.calls == [("m", "openai", NOW_MS - 5 * HOUR, 7), ("m", None, NOW_MS - 1, 100)]


def test_events_after_an_out_of_bounds_or_unpriceable_one_in_a_batch_still_count():
    prices = RecordingPrices()
    rollup = draft([event("late", NOW_MS - 8 * 24 * HOUR), event("a"), event("odd", model="broken-model"),
                    event("b")], prices=prices).finish(set())
    assert [(d.rejection.index, d.rejection.reason) for d in rollup.dead_letters] == [(0, "too_late"),
                                                                                     (2, "mapping_failed")]
    assert rollup.new_requests == [("k1", "a"), ("k1", "b")]
    assert sum(counts.requests for counts in rollup.groups.values()) == 2


def test_a_pricing_failure_names_the_model_provider_and_error_within_500_characters():
    rollup = draft(event("odd", model="broken-" + "m" * 200, provider="p" * 150)).finish(set())
    [letter] = rollup.dead_letters
    detail = letter.rejection.detail
    assert detail.startswith(f"pricing model {('broken-' + 'm' * 200)[:100]!r} (provider {'p' * 100!r}) failed: "
                             "ValueError: xxx")
    assert len(detail) == 500 and letter.rejection.raw == json.dumps(event(
        "odd", model="broken-" + "m" * 200, provider="p" * 150)).encode() and letter.rejection.index is None
    assert +rollup.outcomes == {Outcome("rejected", "mapping_failed"): 1}


def test_repeats_inside_one_message_count_once_and_the_rest_of_the_batch_counts():
    rollup = draft([event("a", input_tokens=1), event("a", input_tokens=50), event("b", input_tokens=2)]).finish(
        set())
    assert [c.input_tokens for c in rollup.groups.values()] == [3]
    assert rollup.outcomes == {Outcome("counted"): 2, Outcome(DUPLICATE): 1}


def test_only_requests_older_than_the_dedup_horizon_or_hit_by_the_filter_are_asked_about():
    horizon = NOW_MS - 24 * HOUR
    seen = SeenRequests(request_id_hashes(["in-filter"]), np.asarray([0], dtype=np.uint32))
    result = draft(event("at-horizon", horizon), event("before-horizon", horizon - 1), event("fresh"),
                   event("in-filter"), seen=seen)
    assert sorted(result.maybe_seen) == [RequestKey("k1", "before-horizon"), RequestKey("k1", "in-filter")]
    assert draft(event("fresh")).maybe_seen == []


def test_a_confirmed_duplicate_leaves_no_empty_group_and_takes_its_gateway_cost_back():
    result = draft(event("a", gateway_cost_usd="0.25"), event("b", model="other", gateway_cost_usd="0.5"),
                   event("c", model="other", gateway_cost_usd="0.125"))
    rollup = result.finish({RequestKey("k1", "a"), RequestKey("k1", "b")})
    assert [(g.model, c.requests) for g, c in rollup.groups.items()] == [("other", 1)]
    assert list(rollup.gateway_cost.values()) == [Decimal("0.125")]
    assert list(rollup.costs.values()) == [Cost(100, 20)]
    assert rollup.new_requests == [("k1", "c")]
    assert rollup.outcomes == {Outcome("counted"): 1, Outcome(DUPLICATE): 2}


def test_new_requests_carry_their_event_hour_as_a_whole_number_of_hours():
    rollup = draft(event("a", NOW_MS - 90 * 60_000), event("b", NOW_MS), event("c", NOW_MS - 1)).finish(set())
    assert rollup.new_request_hours == [NOW_MS // HOUR - 2, NOW_MS // HOUR, NOW_MS // HOUR - 1]
    assert all(type(hour) is int for hour in rollup.new_request_hours)


def test_unpriced_requests_counts_only_groups_without_a_price_sheet():
    rollup = draft(event("a"), event("b"), event("c", model="free-model")).finish(set())
    assert rollup.unpriced_requests == 1
    assert {g.price_version: c.requests for g, c in rollup.groups.items()} == {"sheet-m": 2, "": 1}
    assert {g.price_version: cost for g, cost in rollup.costs.items()} == {"sheet-m": Cost(200, 40)}


def test_time_bounds_are_relative_to_the_flushs_clock():
    bounds = TimeBounds(now_ms=10_000_000, max_lateness_ms=4_000, max_future_skew_ms=300, dedup_horizon_ms=2_000)
    assert (bounds.oldest_ms, bounds.newest_ms, bounds.horizon_ms) == (9_996_000, 10_000_300, 9_998_000)


def test_messages_bounds_and_dead_letters_are_immutable_slotted_values():
    raw = RawMessage(1, b"k", b"{}")
    letter = DeadLetter(1, draft([event("late", 0)]).rollup.dead_letters[0].rejection)
    for value, name in ((raw, "offset"), (letter, "offset"), (BOUNDS, "now_ms")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, 2)
    assert not hasattr(raw, "__dict__") and not hasattr(letter, "__dict__")  # one per consumed message: small
    assert raw.timestamp_ms == 0
