"""pipeline/units.py: the unit table is genai-prices' own, the part-of rules are derived from it, and the
schema, the docs and the contract's checks all come from that one declaration."""

import json
import random
from decimal import Decimal

import msgspec
import pytest
from genai_prices import Usage
from genai_prices.types import ModelPrice
from genai_prices.units import _get_registry

from pipeline.contract import ContractDecoder
from pipeline.units import (BY_NAME, HIERARCHY, TOP_LEVEL, UNITS, USAGE_UNITS, closure, decomposition, docs_table,
                            inconsistency, usage_schema)
from schemas import USAGE_EVENT_SCHEMA
from support.units import consistent_values

DOCS = USAGE_EVENT_SCHEMA.parents[1] / "docs" / "pricing.md"


def test_the_table_is_genai_prices_registry():
    """A genai-prices upgrade that adds, renames or reshapes a unit fails here instead of being priced wrong."""
    theirs = {u.usage_key: (u.price_key, u.per, dict(u.dimensions)) for u in _get_registry().units.values()}
    ours = {u.name: (u.price_key, u.per, dict(u.dimensions)) for u in UNITS}
    assert ours == theirs
    assert len(UNITS) == 59


def test_every_unit_has_exactly_one_place_in_an_event():
    fields = [u.field for u in UNITS if u.field]
    assert len(fields) == len(set(fields)) == 58  # every unit but requests (one per event, implicit)
    assert set(TOP_LEVEL.values()) | set(USAGE_UNITS) | {"requests"} == set(BY_NAME)


@pytest.mark.parametrize(("unit", "wholes"), [
    ("input_audio_tokens", {"input_tokens"}),
    ("cache_write_1h_tokens", {"cache_write_tokens"}),
    ("cache_audio_write_1h_tokens", {"cache_audio_write_tokens", "cache_write_1h_tokens"}),
    ("cache_text_read_tokens", {"cache_read_tokens", "input_text_tokens"}),
    ("output_reasoning_tokens", {"output_tokens"}),
    ("input_audio_seconds", {"audio_seconds"}),
    ("input_annotated_document_pages", {"input_document_pages"}),
    ("web_searches", set()),
])
def test_direct_wholes(unit: str, wholes: set[str]):
    assert set(HIERARCHY.parents[unit]) == wholes


def test_parts_that_never_overlap_are_grouped():
    groups = {frozenset(g) for g in HIERARCHY.disjoint_groups["input_tokens"]}
    assert frozenset({"cache_read_tokens", "cache_write_tokens", "input_tool_tokens"}) in groups
    assert frozenset({"input_text_tokens", "input_audio_tokens", "input_image_tokens", "input_video_tokens"}) in groups
    assert {frozenset(g) for g in HIERARCHY.disjoint_groups["cache_write_tokens"]} >= {
        frozenset({"cache_write_5m_tokens", "cache_write_1h_tokens"})}


@pytest.mark.parametrize(("values", "named"), [
    ({"input_tokens": 10, "cache_write_tokens": 5, "cache_write_1h_tokens": 6},
     "usage.cache_write_1h_tokens (6) exceeds cache_write_tokens (5)"),
    ({"input_tokens": 10, "input_audio_tokens": 6, "input_image_tokens": 6},
     "the parts of input_tokens (10) exceed it: usage.input_audio_tokens 6, usage.input_image_tokens 6"),
    ({"input_tokens": 10, "input_audio_tokens": 6, "cache_read_tokens": 6},
     "the parts of input_tokens (10) exceed it: cache_read_tokens 6, usage.input_audio_tokens 6"),
    ({"input_tokens": 10, "cache_read_tokens": 4, "cache_audio_read_tokens": 2},
     "usage.cache_audio_read_tokens (2) exceeds usage.input_audio_tokens (0)"),
    ({"audio_seconds": 3, "input_audio_seconds": 2, "output_audio_seconds": 2},
     "the parts of usage.audio_seconds (3) exceed it"),
])
def test_a_part_exceeding_its_whole_is_named(values: dict, named: str):
    assert named in inconsistency({"output_tokens": 0, **values})


@pytest.mark.parametrize("values", [
    {"input_tokens": 10, "input_audio_tokens": 6, "cache_read_tokens": 6, "cache_audio_read_tokens": 2},  # overlap
    {"input_tokens": 10, "cache_write_tokens": 5, "cache_write_5m_tokens": 2, "cache_write_1h_tokens": 3},
    {"input_tokens": 0, "output_tokens": 0, "web_searches": 4, "audio_seconds": 9},
])
def test_consistent_values_pass(values: dict):
    assert inconsistency(values) is None


def test_what_passes_is_what_genai_prices_can_price_under_the_sheet_that_prices_everything():
    """The contract's rule equals genai-prices' own: its leaves are non-negative under a sheet pricing every
    unit (which makes genai-prices check every part), for random values, consistent or not."""
    sheet = ModelPrice(**{u.price_key: Decimal(1) for u in UNITS})
    rng = random.Random(5)
    names = [u.name for u in UNITS if u.name != "requests"]
    for _ in range(400):
        chosen = rng.sample(names, rng.randint(1, 6))
        values = consistent_values(rng, set(chosen), big=False)
        if rng.random() < 0.5:  # break it: one value moved up or down
            name = rng.choice(list(values))
            values[name] = max(0, values[name] + rng.choice([-3, -1, 1, 50]))
        every = {name: values.get(name, 0) for name in closure(frozenset(values) | {"input_tokens", "output_tokens"})}
        try:
            sheet.calc_price(Usage(**every))
            genai_ok = True
        except ValueError:
            genai_ok = False
        assert (inconsistency(values) is None) == genai_ok, values


def test_the_decomposition_subtracts_each_overlap_once():
    plan = decomposition(frozenset({"input_audio_tokens", "cache_read_tokens"}))
    assert "cache_audio_read_tokens" in plan.order  # the overlap is part of the closure
    leaves = dict(zip(plan.order, plan.leaves({"input_tokens": 100, "input_audio_tokens": 60, "cache_read_tokens": 30,
                                              "cache_audio_read_tokens": 20})))
    assert leaves == {"input_tokens": 30, "input_audio_tokens": 40, "cache_read_tokens": 10,
                      "cache_audio_read_tokens": 20}


def test_the_published_schema_holds_the_derived_usage_object():
    schema = json.loads(USAGE_EVENT_SCHEMA.read_text())
    assert schema["$defs"]["usage"] == usage_schema(), "regenerate with: python -m pipeline.units schema"
    assert schema["$defs"]["event"]["properties"]["usage"] == {"$ref": "#/$defs/usage"}


def test_the_docs_hold_the_derived_table():
    assert docs_table() in DOCS.read_text(), "regenerate with: python -m pipeline.units docs"


def test_the_decoder_drops_zero_counts_and_keeps_v1_events_as_they_were():
    decoder = ContractDecoder()
    base = {"request_id": "r", "api_key_id": "k", "model": "m", "timestamp": 1795601700000, "input_tokens": 5,
            "output_tokens": 1}
    [plain], _ = decoder.decode(msgspec.json.encode(base))
    assert plain.usage is None and plain.service_tier == ""
    assert msgspec.json.decode(msgspec.json.encode(plain)) == base  # encoded as it came: nothing added
    [empty], _ = decoder.decode(msgspec.json.encode({**base, "usage": {"web_searches": 0}}))
    assert empty.usage is None
    [some], _ = decoder.decode(msgspec.json.encode({**base, "usage": {"web_searches": 2, "input_audio_tokens": 0}}))
    assert some.usage == {"web_searches": 2}
