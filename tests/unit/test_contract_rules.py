"""Event contract v1 at its edges: the accepted time window, length and range limits, gateway costs, and the
decoder's promise never to raise (pure logic, no Kafka)."""

import dataclasses
import json

import msgspec
import pytest

import pipeline.contract as contract
from pipeline.contract import (MAX_EPOCH_MS, MAX_TOKENS, ContractDecoder, Rejection, hash_api_key, rejection_for,
                               time_bounds_problem)

NOW_MS = 1_800_000_000_000  # 2027-01-15T08:00:00Z
SKEW_MS = 90_700  # not whole seconds: the detail rounds them (90.7 s -> "91 s")
LATENESS_MS = 7 * 86_400_000


def event(**fields) -> dict:
    base = {"request_id": "r1", "api_key_id": "k1", "model": "gpt-4o", "timestamp": "2026-11-25T10:00:00Z",
            "input_tokens": 10, "output_tokens": 5}
    return base | fields


def decode(value, key: bytes | None = None):
    return ContractDecoder().decode(json.dumps(value).encode(), key)


# ---- the accepted time window [now - lateness, now + skew] -------------------------------------------------

def bounds(timestamp_ms: int, lateness_ms: int = LATENESS_MS):
    return time_bounds_problem(timestamp_ms, NOW_MS, lateness_ms, SKEW_MS)


def test_the_window_includes_both_of_its_ends():
    assert bounds(NOW_MS + SKEW_MS) is None
    assert bounds(NOW_MS - LATENESS_MS) is None
    assert bounds(NOW_MS) is None


def test_one_millisecond_beyond_the_skew_bound_is_in_the_future():
    assert bounds(NOW_MS + SKEW_MS + 1) == (
        "future_timestamp", "timestamp is 91 s in the future; at most 91 s of clock skew is accepted")
    assert bounds(NOW_MS + 3_600_000) == (
        "future_timestamp", "timestamp is 3600 s in the future; at most 91 s of clock skew is accepted")
    assert bounds(MAX_EPOCH_MS) == (
        "future_timestamp", "timestamp is 8200000000 s in the future; at most 91 s of clock skew is accepted")
    # the bound's seconds are rounded half-even, not cut
    for skew_ms, text in ((90_450, "90"), (90_501, "91")):
        [_, detail] = time_bounds_problem(NOW_MS + 3_600_000, NOW_MS, LATENESS_MS, skew_ms)
        assert detail.endswith(f"at most {text} s of clock skew is accepted")


def test_one_millisecond_beyond_the_lateness_bound_is_too_late():
    assert bounds(NOW_MS - LATENESS_MS - 1) == (
        "too_late", "timestamp is 168.0 h old; events older than 168 h are not added to their hour any more")
    # hours are rounded half-even, to tenths for the age, to whole hours for the bound
    assert bounds(NOW_MS - 91_619_999, lateness_ms=9_000_000) == (  # 25.4499997 h old, 2.5 h allowed
        "too_late", "timestamp is 25.4 h old; events older than 2 h are not added to their hour any more")
    assert bounds(NOW_MS - 91_620_001, lateness_ms=9_000_001) == (  # 25.4500003 h old, 2.5000003 h allowed
        "too_late", "timestamp is 25.5 h old; events older than 3 h are not added to their hour any more")


def test_a_timestamp_in_epoch_seconds_is_pointed_out():
    """Epoch milliseconds below 10**11 are before 1973-03-03: almost surely epoch seconds sent by mistake."""
    hint = " (it looks like epoch seconds: the contract wants epoch milliseconds)"
    seconds = NOW_MS // 1000
    assert bounds(seconds) == ("too_late", "timestamp is 499500.0 h old; events older than 168 h are not added to "
                                           "their hour any more" + hint)
    assert bounds(10**11 - 1)[1].endswith(hint)
    assert bounds(10**11)[1].endswith("are not added to their hour any more")


# ---- limits of single fields ------------------------------------------------------------------------------

def test_epoch_milliseconds_up_to_the_year_2286_are_read():
    [e], [] = decode(event(timestamp=MAX_EPOCH_MS))
    assert e.timestamp == 10**13
    [], [rejection] = decode(event(timestamp=MAX_EPOCH_MS + 1))
    assert rejection.reason == "invalid_field" and "`$.timestamp`" in rejection.detail


def test_epoch_milliseconds_start_at_zero():
    [e], [] = decode(event(timestamp=0))
    assert e.timestamp == 0
    [], [rejection] = decode(event(timestamp=-1))
    assert rejection.reason == "invalid_field" and "`$.timestamp`" in rejection.detail


@pytest.mark.parametrize("field", ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                                   "reasoning_tokens"])
def test_token_counts_go_up_to_a_trillion(field):
    counts = {"input_tokens": MAX_TOKENS, "output_tokens": MAX_TOKENS} | {field: MAX_TOKENS}
    [e], [] = decode(event(**counts))
    assert getattr(e, field) == 10**12
    [], [rejection] = decode(event(**counts | {field: MAX_TOKENS + 1}))
    assert rejection.reason == "invalid_field" and f"`$.{field}`" in rejection.detail


def test_a_request_id_holds_at_most_128_characters():
    [e], [] = decode(event(request_id="é" * 128))
    assert e.request_id == "é" * 128
    [], [rejection] = decode(event(request_id="é" * 129))
    assert rejection.reason == "invalid_field" and "`$.request_id`" in rejection.detail


def test_a_latency_is_zero_or_more_milliseconds():
    [e], [] = decode(event(latency_ms=0))
    assert e.latency_ms == 0
    [], [rejection] = decode(event(latency_ms=-1))
    assert rejection.reason == "invalid_field" and "`$.latency_ms`" in rejection.detail


def test_optional_fields_default_to_nothing_and_are_left_out_when_encoded():
    [e], [] = decode(event(timestamp=1_795_600_800_123))
    assert (e.provider, e.cache_read_tokens, e.cache_write_tokens, e.reasoning_tokens, e.org_id, e.project_id,
            e.status, e.latency_ms, e.gateway_cost_usd, e.api_key) == ("", 0, 0, 0, "", "", "ok", None, None, None)
    assert msgspec.json.encode(e) == (b'{"request_id":"r1","model":"gpt-4o","timestamp":1795600800123,'
                                      b'"input_tokens":10,"output_tokens":5,"api_key_id":"k1"}')


def test_a_rejection_is_a_frozen_slotted_value():
    rejection = Rejection("too_late", "old", b"{}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rejection.reason = "other"  # type: ignore[misc]
    assert not hasattr(rejection, "__dict__")


@pytest.mark.parametrize("field", ["model", "api_key_id", "provider", "org_id", "project_id"])
def test_labels_hold_at_most_256_characters(field):
    [e], [] = decode(event(**{field: "é" * 256}))
    assert getattr(e, field) == "é" * 256
    [], [rejection] = decode(event(**{field: "é" * 257}))
    assert rejection.reason == "invalid_field" and f"`$.{field}`" in rejection.detail


@pytest.mark.parametrize("cost", ["0", "0.000", "0.001234", "12345678901234567890.123456789012345678"])
def test_a_gateway_cost_of_zero_or_more_is_accepted(cost):
    [e], [] = decode(event(gateway_cost_usd=cost))
    assert e.gateway_cost_usd == cost


@pytest.mark.parametrize("cost", ["-0.001", "-1"])
def test_a_negative_gateway_cost_is_refused(cost):
    [], [rejection] = decode(event(gateway_cost_usd=cost))
    assert (rejection.reason, rejection.detail) == (
        "invalid_field", 'gateway_cost_usd must be a decimal string such as "0.001234"')


def test_a_batch_keeps_each_rules_detail():
    batch = [event(request_id="a"), event(request_id="b", cache_read_tokens=6, cache_write_tokens=5)]
    [good], [bad] = decode(batch)
    assert (good.request_id, bad.index, bad.reason) == ("a", 1, "inconsistent_tokens")
    assert bad.detail == "cache_read_tokens + cache_write_tokens exceed input_tokens (which include them)"


def test_an_id_before_or_after_the_message_key_is_a_mismatch():
    for other in ("a", "z"):
        [], [rejection] = decode(event(api_key_id=other), b"k1")
        assert (rejection.reason, rejection.detail) == (
            "key_mismatch", "the event's api_key_id differs from the message key")


def test_a_batch_read_item_by_item_keeps_each_rules_detail():
    """One item breaks the schema, so the batch is read one item at a time; a rule only the decoder checks
    still reports its own detail."""
    batch = [event(request_id="a", input_tokens="ten"), event(request_id="b", reasoning_tokens=6)]
    [], rejections = decode(batch, b"k1")
    assert [(r.index, r.reason) for r in rejections] == [(0, "invalid_field"), (1, "inconsistent_tokens")]
    assert rejections[1].detail == "reasoning_tokens exceed output_tokens (which include them)"


# ---- the decoder never raises --------------------------------------------------------------------------------

def test_an_unexpected_error_while_reading_a_message_rejects_it_and_names_the_error(monkeypatch):
    """decode() promises a rejection, never an exception, for an error of any type; none is known to happen
    today, so one is injected into the rule checks."""
    def failing(*args):
        raise LookupError("injected")

    monkeypatch.setattr(contract, "_normalise", failing)
    for value in (event(), [event(), event(request_id="r2")]):
        events, [rejection] = decode(value)
        assert events == [] and (rejection.reason, rejection.detail) == ("undecodable", "LookupError: injected")


def test_should_redaction_fail_a_rejection_carries_no_bytes_at_all(monkeypatch):
    def failing(raw):
        raise RuntimeError("injected")

    raw = b'{"api_key": "sk-live-SECRET", "model": '
    assert rejection_for(ValueError("bad"), raw).raw == b'{"api_key": "sha256:' + \
        hash_api_key("sk-live-SECRET").encode() + b'", "model": '
    monkeypatch.setattr(contract, "redact", failing)
    rejection = rejection_for(ValueError("bad"), raw, 3)
    assert (rejection.reason, rejection.detail, rejection.raw, rejection.index) == (
        "undecodable", "ValueError: bad", b"", 3)


def test_a_batch_holds_at_most_1000_events_by_default():
    batch = [event(request_id=str(i)) for i in range(1001)]
    events, [] = decode(batch[:1000])
    assert len(events) == 1000
    [], [rejection] = decode(batch)
    assert rejection.detail == "batch holds 1001 events; at most 1000 are allowed"


def test_a_batch_read_item_by_item_keeps_the_size_limit():
    batch = [event(request_id="a"), event(request_id="b", input_tokens=-1), event(request_id="c")]
    [], [rejection] = ContractDecoder(max_batch_events=2).decode(json.dumps(batch).encode())
    assert (rejection.reason, rejection.detail, rejection.index) == (
        "batch_too_large", "batch holds 3 events; at most 2 are allowed", None)
    [good], [bad] = ContractDecoder(max_batch_events=2).decode(json.dumps(batch[:2]).encode())
    assert (good.request_id, bad.reason, bad.index) == ("a", "invalid_field", 1)


def test_a_rejections_detail_is_cut_at_500_characters():
    rejection = rejection_for(ValueError("x" * 1000), b"{")
    assert rejection.detail == "ValueError: " + "x" * 488 and len(rejection.detail) == 500
