"""The rollup's declared measures (pipeline/measures.py): Counts sums each event exactly as the contract defines
its fields, and the declarations themselves cannot be changed at run time."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline.contract import ContractDecoder
from pipeline.measures import BY_NAME, COUNTED, REQUESTS, USAGE_MEASURES, Counts


def decoded(**fields):
    event = {"request_id": "r", "api_key_id": "k", "model": "gpt-4o", "timestamp": 1_764_000_000_000,
             "input_tokens": 30, "output_tokens": 4, **fields}
    [one], rejections = ContractDecoder().decode(json.dumps(event).encode())
    assert rejections == []
    return one


def test_only_events_with_status_error_count_as_error_requests_and_only_a_reported_cost_as_gateway_cost():
    counts = Counts()
    for event in (decoded(), decoded(status="ok"), decoded(status="error"), decoded(gateway_cost_usd="0")):
        counts.add(event)
    assert counts.as_dict() == {"requests": 4, "error_requests": 1, "input_tokens": 120, "output_tokens": 16,
                                "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0,
                                "gateway_cost_requests": 1}
    counts.subtract(decoded(status="error"))
    assert (counts.requests, counts.error_requests, counts.input_tokens) == (3, 0, 90)
    assert repr(counts).startswith("Counts({'requests': 3, 'error_requests': 0,")


def test_measure_declarations_are_frozen_and_named_once():
    with pytest.raises(dataclasses.FrozenInstanceError):
        REQUESTS.name = "calls"  # type: ignore[misc]
    assert len({*USAGE_MEASURES}) == len(USAGE_MEASURES) == len(BY_NAME)
    # one slot per counted measure, then the per-unit counts and what is priced apart (pipeline/units.py)
    assert Counts.__slots__ == (*(measure.name for measure in COUNTED), "units", "priced_apart")
