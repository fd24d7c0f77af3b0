"""Event contract v1: every published example decodes as documented, reasons are precise."""

import hashlib
import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from pipeline.contract import REASONS, ContractDecoder, UsageEvent, hash_api_key, redact
from schemas import EXAMPLES_DIR, USAGE_EVENT_SCHEMA

VALID = sorted((EXAMPLES_DIR / "valid").glob("*.json"))
INVALID = sorted((EXAMPLES_DIR / "invalid").glob("*.json"))
# Rules JSON Schema cannot state (sums of fields); the decoder enforces them on its own.
DECODER_ONLY_REASONS = {"inconsistent_tokens"}
SCHEMA = json.loads(USAGE_EVENT_SCHEMA.read_text())


def event(**fields) -> dict:
    base = {"request_id": "r1", "api_key_id": "k1", "model": "gpt-4o", "timestamp": "2026-11-25T10:00:00Z",
            "input_tokens": 10, "output_tokens": 5}
    base.update(fields)
    return base


def encode(value) -> bytes:
    return json.dumps(value).encode()


def test_examples_exist():
    assert len(VALID) >= 5 and len(INVALID) >= 15


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_is_accepted_and_normalised(path: Path):
    document = json.loads(path.read_bytes())
    jsonschema.validate(document, SCHEMA)
    events, rejections = ContractDecoder().decode(path.read_bytes())
    assert rejections == []
    assert len(events) == (len(document) if isinstance(document, list) else 1)
    for e in events:
        assert isinstance(e.timestamp, int) and e.timestamp > 1_700_000_000_000
        assert e.api_key_id and e.api_key is None


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_is_rejected_with_its_reason(path: Path):
    reason = path.name.split("--")[0]
    assert reason in REASONS
    events, rejections = ContractDecoder().decode(path.read_bytes())
    assert [r.reason for r in rejections] == [reason], rejections
    assert rejections[0].detail
    try:
        document = json.loads(path.read_bytes())
    except json.JSONDecodeError:
        return
    if reason not in DECODER_ONLY_REASONS:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, SCHEMA)


def test_timestamps_become_epoch_millis():
    decoder = ContractDecoder()
    [a], _ = decoder.decode(encode(event(timestamp="2026-11-25T11:00:00.123+01:00")))
    utc_ms = 1795600800123  # 2026-11-25T10:00:00.123Z, the same instant
    [b], _ = decoder.decode(encode(event(timestamp=utc_ms)))
    assert a.timestamp == b.timestamp == utc_ms


def test_precise_detail_names_the_field():
    _, [r] = ContractDecoder().decode(encode(event(output_tokens=-1)))
    assert r.reason == "invalid_field" and "output_tokens" in r.detail


def test_one_bad_event_never_spoils_its_batch():
    batch = [event(request_id="a"), event(request_id="b", input_tokens=-1), event(request_id="c"), "junk",
             event(request_id="e", cache_read_tokens=11)]
    events, rejections = ContractDecoder().decode(encode(batch), key=b"k1")
    assert [e.request_id for e in events] == ["a", "c"]
    assert [(r.index, r.reason) for r in rejections] == [
        (1, "invalid_field"), (3, "not_an_object"), (4, "inconsistent_tokens")]
    # each rejection carries only its own event's bytes
    assert json.loads(rejections[0].raw)["request_id"] == "b"
    assert rejections[1].raw == b'"junk"'


def test_batch_size_limit():
    decoder = ContractDecoder(max_batch_events=3)
    events, rejections = decoder.decode(encode([event(request_id=str(i)) for i in range(4)]))
    assert events == [] and [r.reason for r in rejections] == ["batch_too_large"]
    assert "4 events" in rejections[0].detail and "at most 3" in rejections[0].detail
    events, rejections = decoder.decode(encode([event(request_id=str(i)) for i in range(3)]))
    assert len(events) == 3 and rejections == []


def test_message_key_must_match_the_api_key_id():
    decoder = ContractDecoder()
    assert decoder.decode(encode(event()), key=b"k1")[1] == []
    assert decoder.decode(encode(event()), key=None)[1] == []
    _, [r] = decoder.decode(encode([event(), event(request_id="r2", api_key_id="other")]), key=b"k1")
    assert (r.reason, r.index) == ("key_mismatch", 1)


def test_raw_secret_is_hashed_and_never_kept():
    secret = "sk-live-VERY-SECRET"
    [e], _ = ContractDecoder().decode(encode(event(api_key_id=None, api_key=secret)))
    assert e.api_key_id == hashlib.sha256(secret.encode()).hexdigest() == hash_api_key(secret)
    assert e.api_key is None and secret not in msgspec.json.encode(e).decode()


def test_explicit_id_wins_over_a_secret_and_the_secret_is_dropped():
    [e], _ = ContractDecoder().decode(encode(event(api_key="sk-x")))
    assert e.api_key_id == "k1" and e.api_key is None


@pytest.mark.parametrize("raw", [
    encode(event(api_key="sk-live-SECRET", input_tokens=-1)),
    b'{"request_id": "x", "api_key": "sk-live-SECRET", "model": ',
    b'{"request_id": "x", "api_key" : "sk-live-SECRET',
    encode([event(api_key="sk-live-SECRET", api_key_id=None, output_tokens="x")]),
])
def test_rejected_bytes_never_carry_a_secret(raw):
    _, rejections = ContractDecoder().decode(raw)
    assert rejections
    for r in rejections:
        assert b"sk-live-SECRET" not in r.raw
        assert hash_api_key("sk-live-SECRET").encode() in r.raw


def test_redact_leaves_other_payloads_untouched():
    raw = encode(event())
    assert redact(raw) is raw


def test_unknown_fields_are_ignored_and_defaults_apply():
    [e], _ = ContractDecoder().decode(encode(event(region="eu", extra={"a": 1})))
    assert isinstance(e, UsageEvent)
    assert (e.provider, e.status, e.cache_read_tokens, e.org_id) == ("", "ok", 0, "")
