"""What the ClickHouse writer sends, column by column (pipeline/metering/sink.py's pure encoding, no ClickHouse):
the rollup rows of a flush (usage per group, outcome counts, progress) and its request-id rows. How ClickHouse
stores and reads them back is tested on the real engine in tests/integration/test_sink.py; expected values here
are hand arithmetic."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from decimal import Decimal

import pytest

from pipeline.measures import Counts, Dimensions
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.pricing import Cost
from pipeline.metering.rollup import Outcome, Rollup
from pipeline.metering.sink import COST_UNITS_COLUMNS, DEDUP_COLUMNS, ROLLUP_COLUMNS, FencedError, FlushRange, \
    RollupWriter

TOPIC = "meterline.usage.v1"
HOUR_491_000 = 491_000  # hours since the epoch (2026-01-05T08:00Z)
PRICED = Dimensions("k1", "org-1", "proj-1", "gpt-4o", "openai", HOUR_491_000 * 4 + 3, "gp-0.2.3")
UNPRICED = Dimensions("k2", "", "", "acme-private", "", HOUR_491_000 * 4 + 1, "")


def counts(**values: int) -> Counts:
    result = Counts()
    for name, value in values.items():
        setattr(result, name, value)
    return result


def rollup() -> Rollup:
    return Rollup(
        groups={PRICED: counts(requests=3, error_requests=1, input_tokens=1200, output_tokens=80,
                               cache_read_tokens=200, cache_write_tokens=100, reasoning_tokens=30,
                               gateway_cost_requests=2),
                UNPRICED: counts(requests=2, input_tokens=10, output_tokens=5)},
        costs={PRICED: Cost(input_units=2_500 * 10**18, output_units=800 * 10**18)},
        gateway_cost={PRICED: Decimal("0.0031")},
        outcomes=Counter({Outcome("counted"): 5, Outcome("duplicate"): 2, Outcome("rejected", "too_late"): 1,
                          Outcome("rejected", "invalid_json"): 0}),
        new_requests=[("k1", "r-1"), ("k2", "r-2")],
        new_request_hours=[HOUR_491_000, HOUR_491_000 - 30],
    )


def writer(max_lateness_s: float = 7 * 86_400) -> RollupWriter:
    return RollupWriter(None, TOPIC, max_lateness_s, Failpoints())  # encoding never touches the client


def test_a_flush_encodes_one_row_per_group_then_its_outcomes_then_its_progress():
    flush = FlushRange(partition=3, first_offset=40, last_offset=49, expected_progress=39,
                       counted_through_ms=1_767_600_000_123)
    columns = json.loads(writer().encode(flush, rollup()).rollups)
    assert list(columns) == list(ROLLUP_COLUMNS)
    rows = [dict(zip(columns, values)) for values in zip(*columns.values())]
    zero = {"requests": 0, "error_requests": 0, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "reasoning_tokens": 0, "gateway_cost_requests": 0, "unpriced_requests": 0,
            "gateway_cost": "0", "units": {}, "input_cost_units": 0, "output_cost_units": 0, "unit_cost_units": {}}
    no_group = {"api_key_id": "", "org_id": "", "project_id": "", "model": "", "provider": "", "hour": 0,
                "quarter": 0, "price_version": ""}
    assert rows == [
        {"kind": "usage", "api_key_id": "k1", "org_id": "org-1", "project_id": "proj-1", "model": "gpt-4o",
         "provider": "openai", "hour": HOUR_491_000 * 3600, "quarter": 3, "price_version": "gp-0.2.3",
         "kafka_topic": "", "kafka_partition": 0, "outcome": "", "reason": "", "requests": 3, "error_requests": 1,
         "input_tokens": 1200, "output_tokens": 80, "cache_read_tokens": 200, "cache_write_tokens": 100,
         "reasoning_tokens": 30, "gateway_cost_requests": 2, "unpriced_requests": 0,
         "gateway_cost": "0.003100000000000000000000", "units": {}, "input_cost_units": 2_500 * 10**18,
         "output_cost_units": 800 * 10**18, "unit_cost_units": {}, "events": 0, "last_offset": 0,
         "counted_through": 0},
        {"kind": "usage", "api_key_id": "k2", "org_id": "", "project_id": "", "model": "acme-private",
         "provider": "", "hour": HOUR_491_000 * 3600, "quarter": 1, "price_version": "", "kafka_topic": "",
         "kafka_partition": 0, "outcome": "", "reason": "", **zero, "requests": 2, "input_tokens": 10,
         "output_tokens": 5, "unpriced_requests": 2, "events": 0, "last_offset": 0, "counted_through": 0},
        {"kind": "outcome", **no_group, "kafka_topic": TOPIC, "kafka_partition": 3, "outcome": "counted",
         "reason": "", **zero, "events": 5, "last_offset": 0, "counted_through": 0},
        {"kind": "outcome", **no_group, "kafka_topic": TOPIC, "kafka_partition": 3, "outcome": "duplicate",
         "reason": "", **zero, "events": 2, "last_offset": 0, "counted_through": 0},
        {"kind": "outcome", **no_group, "kafka_topic": TOPIC, "kafka_partition": 3, "outcome": "rejected",
         "reason": "too_late", **zero, "events": 1, "last_offset": 0, "counted_through": 0},
        {"kind": "progress", **no_group, "kafka_topic": TOPIC, "kafka_partition": 3, "outcome": "", "reason": "",
         **zero, "events": 0, "last_offset": 49, "counted_through": 1_767_600_000.123},
    ]
    assert set(COST_UNITS_COLUMNS) <= set(ROLLUP_COLUMNS)


@pytest.mark.parametrize("epoch_ms,text", [(1_767_600_000_123, b'"1767600000.123"'), (5, b'"0.005"'),
                                           (0, b'"0.000"'), (60_050, b'"60.050"')])
def test_freshness_travels_as_exact_decimal_seconds(epoch_ms, text):
    """DateTime64(3) as a JSON number written from integers (text here only to compare it byte for byte)."""
    flush = FlushRange(0, 0, 0, -1, counted_through_ms=epoch_ms)
    body = writer().encode(flush, Rollup()).rollups
    assert json.loads(body)["counted_through"] == [json.loads(text.strip(b'"'))]
    assert b'"counted_through":[' + text.strip(b'"') + b"]" in body


def test_an_empty_flush_still_writes_its_progress_and_no_request_ids():
    encoded = writer().encode(FlushRange(1, 7, 9, 6), Rollup())
    assert encoded.request_ids is None
    columns = json.loads(encoded.rollups)
    assert columns["kind"] == ["progress"] and columns["last_offset"] == [9] and columns["kafka_partition"] == [1]


def test_request_ids_are_tagged_with_the_flushs_last_offset_and_kept_past_the_lateness_bound():
    flush = FlushRange(partition=2, first_offset=40, last_offset=49, expected_progress=39)
    columns = json.loads(writer(max_lateness_s=259_200.9).encode(flush, rollup()).request_ids)
    assert list(columns) == list(DEDUP_COLUMNS)
    hours = [HOUR_491_000 * 3600, (HOUR_491_000 - 30) * 3600]
    assert columns == {"kafka_topic": [TOPIC, TOPIC], "kafka_partition": [2, 2], "api_key_id": ["k1", "k2"],
                       "request_id": ["r-1", "r-2"], "hour": hours, "batch_end_offset": [49, 49],
                       "expires_at": [hour + 3 * 86_400 + 86_400 for hour in hours]}


def test_a_fence_names_the_partition_and_both_progress_values():
    fence = FencedError(4, 99, 149)
    assert (fence.partition, fence.expected, fence.found) == (4, 99, 149)
    assert str(fence) == "partition 4: expected progress 99, found 149"


def test_a_flushs_range_and_encoding_are_immutable_values():
    flush = FlushRange(0, 0, 0, -1)
    encoded = writer().encode(flush, Rollup())
    for value, name in ((flush, "last_offset"), (encoded, "rollups")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, 1)
