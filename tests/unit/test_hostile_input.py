"""No message can stop metering: every byte string a record can hold becomes counted events or dead letters
with a precise reason; reading a message never raises.

The corpus (tests/data/hostile) runs through the worker's pure core (decode, bounds, pricing, grouping);
tests/integration/test_hostile_input_worker.py sends the same corpus through a running worker on real Kafka.
"""

from __future__ import annotations

import json
import os
import time

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract import ID_FIELDS, MAX_TOKENS, REASONS, ContractDecoder, Rejection, hash_api_key, unit_values
from pipeline.metering.deadletters import DETAIL_LIMIT, MAX_VALUE_BYTES, dead_letter_record
from pipeline.metering.dedup import SeenRequests
from pipeline.metering.pricing import PriceBook
from pipeline.metering.rollup import COUNTED, REJECTED, RawMessage, RollupBuilder
from pipeline.units import USAGE_UNITS, inconsistency
from support.corpus import hostile_cases
from support.writes import bounds_at

NOW_MS = time.time_ns() // 1_000_000
CASES = hostile_cases(NOW_MS)
BUILDER = RollupBuilder(ContractDecoder(), PriceBook())
# `METERLINE_FUZZ_EXAMPLES=20000 deploy/dev.sh test tests/unit/test_hostile_input.py` runs a longer fuzz.
FUZZ = settings(max_examples=int(os.environ.get("METERLINE_FUZZ_EXAMPLES", "400")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_core(key: bytes | None, value: bytes | None):
    """One message through the worker's per-flush core; the Draft's rollup."""
    draft = BUILDER.draft([RawMessage(7, key, value)], bounds_at(NOW_MS, lateness_ms=7 * 86_400_000),
                          SeenRequests())
    return draft.finish(set())


def test_the_corpus_covers_what_the_issue_names():
    names = {case.name for case in CASES}
    assert len(CASES) >= 40
    for field in ID_FIELDS:
        assert f"invalid-utf8-in-{field.replace('_', '-')}" in names
    for needed in ("lone-high-surrogate-escape", "deep-array-100k", "exponent-1e400-tokens", "negative-zero-tokens",
                   "nan-tokens", "infinity-tokens", "integer-above-2-64-tokens", "duplicate-object-keys",
                   "utf8-bom-prefix", "ten-megabyte-model", "batch-good-badutf8-good", "empty-bytes", "json-null"):
        assert needed in names


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_hostile_message_is_counted_or_dead_lettered_with_its_reason(case):
    rollup = run_core(case.key, case.value)
    assert rollup.outcomes[(COUNTED, "")] == case.counted, case.note
    assert [(d.rejection.index, d.rejection.reason) for d in rollup.dead_letters] == list(case.rejections), \
        [d.rejection.detail for d in rollup.dead_letters]
    assert sum(n for (outcome, _), n in rollup.outcomes.items() if outcome == REJECTED) == len(case.rejections)
    for letter in rollup.dead_letters:
        assert letter.rejection.reason in REASONS and letter.rejection.detail
        assert b"sk-live-HOSTILE-SECRET" not in letter.rejection.raw


def test_errors_that_are_not_msgspec_errors_name_their_class():
    by_name = {case.name: case for case in CASES}
    for name, reason, cls in (("invalid-utf8-in-model", "invalid_encoding", "UnicodeDecodeError"),
                              ("deep-object-100k", "too_deep", "RecursionError")):
        _, [rejection] = ContractDecoder().decode(by_name[name].value, b"key-hostile")
        assert (rejection.reason, rejection.detail.split(":")[0]) == (reason, cls)


def test_a_broken_message_keeps_the_secret_hashed():
    [case] = [case for case in CASES if case.name == "raw-secret-in-broken-json"]
    _, [rejection] = ContractDecoder().decode(case.value)
    assert hash_api_key("sk-live-HOSTILE-SECRET").encode() in rejection.raw


def test_a_tombstone_is_dead_lettered_not_a_crash():
    rollup = run_core(b"key-hostile", None)
    assert [(d.offset, d.rejection.reason, d.rejection.raw) for d in rollup.dead_letters] == [(7, "tombstone", b"")]


def test_a_pricing_failure_dead_letters_the_event_alone():
    class Exploding(PriceBook):
        def rate_for(self, model, provider, ts_ms, input_tokens):
            if model == "boom":
                raise ZeroDivisionError("odd model")
            return super().rate_for(model, provider, ts_ms, input_tokens)

    good = {"request_id": "a", "api_key_id": "k", "model": "gpt-4o", "timestamp": NOW_MS, "input_tokens": 1,
            "output_tokens": 1}
    batch = json.dumps([good, {**good, "request_id": "b", "model": "boom"}]).encode()
    draft = RollupBuilder(ContractDecoder(), Exploding()).draft(
        [RawMessage(3, b"k", batch)], bounds_at(NOW_MS), SeenRequests())
    rollup = draft.finish(set())
    assert rollup.outcomes[(COUNTED, "")] == 1
    [letter] = rollup.dead_letters
    assert (letter.rejection.reason, letter.rejection.index) == ("mapping_failed", 1)
    assert "ZeroDivisionError" in letter.rejection.detail and json.loads(letter.rejection.raw)["model"] == "boom"


def test_a_dead_letter_always_fits_the_dead_letter_topic():
    record = dead_letter_record(Rejection("invalid_field", "\ud800 " + "é" * 2000, b"x" * 10_000_000), "t", 1, 9)
    headers = dict(record.headers)
    assert len(record.value) == MAX_VALUE_BYTES and record.value == b"x" * MAX_VALUE_BYTES
    assert headers["meterline.truncated"] == b"true" and headers["meterline.original_bytes"] == b"10000000"
    assert len(headers["meterline.detail"]) <= DETAIL_LIMIT
    headers["meterline.detail"].decode()  # whole characters only
    small = dead_letter_record(Rejection("tombstone", "d", b"", 4), "t", 1, 9)
    assert small.value == b"" and "meterline.truncated" not in dict(small.headers)
    assert dict(small.headers)["meterline.source.index"] == b"4"


# ---- fuzzing: the only thing allowed out of the decoder is its result ---------------------------------------

def assert_total(value: bytes | None, key: bytes | None = None) -> None:
    events, rejections = ContractDecoder(max_batch_events=50).decode(value, key)
    for rejection in rejections:
        assert rejection.reason in REASONS and rejection.detail, rejection
    for event in events:
        assert isinstance(event.timestamp, int) and event.api_key_id and event.api_key is None
        assert 0 <= event.cache_read_tokens + event.cache_write_tokens <= event.input_tokens <= MAX_TOKENS
        assert 0 <= event.reasoning_tokens <= event.output_tokens <= MAX_TOKENS
        for name in (*ID_FIELDS, "service_tier"):
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in getattr(event, name))
        if event.usage is not None:  # normalised: known units, no zeros, no part above its whole
            assert event.usage and set(event.usage) <= set(USAGE_UNITS) and all(event.usage.values())
            assert inconsistency(unit_values(event)) is None


@FUZZ
@given(st.binary(max_size=512), st.none() | st.binary(max_size=16))
def test_fuzz_any_bytes(value, key):
    assert_total(value, key)


_VALID = {"request_id": "r", "api_key_id": "k", "model": "gpt-4o", "timestamp": NOW_MS, "input_tokens": 10,
          "output_tokens": 5}
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
_FIELDS = (*_VALID, "api_key", "provider", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "org_id",
           "project_id", "status", "latency_ms", "gateway_cost_usd", "usage", "service_tier")
# usage objects: real unit names (and a few others) with counts around the part-of limits
_USAGE = st.dictionaries(st.sampled_from(USAGE_UNITS) | st.text(max_size=12),
                         st.integers(min_value=-1, max_value=12) | st.integers(min_value=-(2**65), max_value=2**65),
                         max_size=6)


@st.composite
def near_valid_events(draw) -> dict:
    """A valid event with some fields replaced by any JSON value, removed, or given odd strings."""
    event = dict(_VALID)
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=4)):
        event[name] = draw(_JSON | st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
                           | (_USAGE if name == "usage" else st.nothing()))
    for name in draw(st.lists(st.sampled_from(list(_VALID)), max_size=2)):
        event.pop(name, None)
    return event


@FUZZ
@given(st.lists(near_valid_events(), min_size=1, max_size=5), st.booleans())
def test_fuzz_near_valid_events_and_batches(events, as_batch):
    value = msgspec.json.encode(events if as_batch else events[0])
    assert_total(value, b"k")


@FUZZ
@given(st.data())
def test_fuzz_byte_mutations_of_valid_messages(data):
    value = bytearray(msgspec.json.encode([_VALID, {**_VALID, "request_id": "s"}]))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(value) - 1))
        action = data.draw(st.sampled_from(("flip", "insert", "delete")))
        byte = data.draw(st.integers(0, 255))
        if action == "flip":
            value[position] = byte
        elif action == "insert":
            value.insert(position, byte)
        elif len(value) > 1:
            del value[position]
    assert_total(bytes(value), b"k")
