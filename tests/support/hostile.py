"""Hostile inputs, built as bytes: named cases with what a reader of them must do.

``contract_cases(now_ms)`` are message values / request bodies in the contract's shape (an event object, a
batch, or not JSON at all): invalid UTF-8 in every string field, lone surrogate escapes, 100k-deep nesting,
1e400 / -0 / NaN / Infinity, integers above 2^64, duplicate keys, a UTF-8 BOM, 10 MB strings, batches mixing
good and bad items, empty bytes, ``null``. Events that are otherwise valid carry ``now_ms`` as their
timestamp, so they are inside the worker's time bounds when sent at once. Each case says what must happen
(:class:`Expectation`), whoever reads it: the collector's ``/v1/events`` or the worker's contract decoder.

``route_cases(route, now_ms)`` puts the same hostile JSON values (:data:`VALUES`) into every field of a
valid body of each collector route (OpenAI, Anthropic, LiteLLM, OTLP, CloudEvents envelopes): no exact
verdict is claimed for those, only that they are answered (a 4xx, or a 200 rejecting what is invalid).

``python -m support.hostile DIR`` (from tests/) writes the contract cases as DIR/<name>.bin plus
DIR/expectations.json, the form of a checked-in corpus.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

KEY = "key_hostile"
DEEP = 100_000
TEN_MB = 10 * 1024 * 1024
BAD_UTF8 = b"\xff\xfe"  # never valid in UTF-8
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Expectation:
    """``good`` events are accepted (counted), ``bad`` are rejected one by one; ``whole`` means the body
    cannot be read as a whole: nothing is accepted, it is refused (400) or its one record rejected.
    ``reasons`` are the reasons allowed for the rejections (or for the whole)."""

    good: int = 0
    bad: int = 0
    whole: bool = False
    reasons: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HostileCase:
    name: str
    body: bytes
    expect: Expectation
    note: str = ""
    accepted_ids: tuple[str, ...] = ()  # request ids of the events that must be accepted (good ones)
    # For an accepted event: fields the produced event must hold (e.g. which of duplicate keys won).
    produced: dict = field(default_factory=dict)


def _json(value) -> bytes:
    return json.dumps(value).encode()


def event_bytes(name: str, now_ms: int, **raw: bytes | None) -> bytes:
    """A valid contract event (request_id ``h-<name>``) as bytes, with fields replaced by raw JSON bytes
    (None removes a field)."""
    fields: dict[str, bytes | None] = {
        "request_id": _json(f"h-{name}"), "api_key_id": _json(KEY), "model": b'"gpt-4o"',
        "provider": b'"openai"', "org_id": b'"org-1"', "project_id": b'"proj-1"', "status": b'"ok"',
        "timestamp": str(now_ms).encode(), "input_tokens": b"10", "output_tokens": b"2",
        "gateway_cost_usd": b'"0.0001"', **raw}
    return b"{" + b",".join(_json(k) + b":" + v for k, v in fields.items() if v is not None) + b"}"


def _bad(*reasons: str, n: int = 1) -> Expectation:
    return Expectation(bad=n, reasons=frozenset(reasons))


def _whole(*reasons: str) -> Expectation:
    return Expectation(whole=True, reasons=frozenset(reasons))


GOOD = Expectation(good=1)
STRING_FIELDS = ("request_id", "api_key_id", "model", "provider", "org_id", "project_id", "status",
                 "gateway_cost_usd")


def contract_cases(now_ms: int) -> list[HostileCase]:
    """At least 40 named cases; see the module docstring."""
    cases: list[HostileCase] = []

    def add(name: str, body: bytes, expect: Expectation, note: str = "", ids: tuple[str, ...] | None = None,
            **produced) -> None:
        if ids is None:  # a good single event: its request id is the last one in its bytes
            ids = tuple(re.findall(rb'"request_id":"([^"]+)"', body)[-1:]) if expect.good else ()
        cases.append(HostileCase(name, body, expect, note, tuple(i if isinstance(i, str) else i.decode()
                                                                 for i in ids), produced))

    def ev(name: str, **raw: bytes | None) -> bytes:
        return event_bytes(name, now_ms, **raw)

    # Invalid UTF-8 inside every string field (msgspec raises UnicodeDecodeError for these).
    for name in STRING_FIELDS:
        add(f"utf8_invalid_in_{name}", ev(f"u8-{name}", **{name: b'"x' + BAD_UTF8 + b'y"'}),
            _bad("invalid_encoding"), "raw 0xFF 0xFE inside the string")
    add("utf8_invalid_in_api_key", ev("u8-api_key", api_key_id=None, api_key=b'"sk-' + BAD_UTF8 + b'"'),
        _bad("invalid_encoding"), "the raw secret field")
    add("utf8_invalid_in_timestamp_string", ev("u8-ts", timestamp=b'"2026-11-25T10:15:00' + BAD_UTF8 + b'Z"'),
        _bad("invalid_encoding", "invalid_field"), "an RFC 3339 string with bad bytes")
    add("utf8_overlong_slash", ev("u8-overlong", model=b'"\xc0\xaf"'), _bad("invalid_encoding"))
    add("utf8_encoded_surrogate", ev("u8-cesu", model=b'"\xed\xa0\x80"'), _bad("invalid_encoding"),
        "a surrogate code point encoded as UTF-8 (CESU-8)")
    add("utf8_truncated_sequence", ev("u8-trunc", model=b'"ab\xe2\x82"'), _bad("invalid_encoding"))
    # Lone surrogate escapes: valid JSON syntax to some parsers, not a Unicode string.
    lone = ("invalid_json", "invalid_encoding")
    add("lone_high_surrogate_escape", ev("sur-hi", model=b'"\\ud800"'), _whole(*lone))
    add("lone_low_surrogate_escape", ev("sur-lo", request_id=b'"\\udc00"'), _whole(*lone))
    add("high_surrogate_then_letter", ev("sur-a", org_id=b'"\\ud800\\u0041"'), _whole(*lone))
    add("surrogate_pair_is_fine", ev("sur-pair", model=b'"\\ud83d\\ude00"'), GOOD, "control: an emoji")
    # Nesting 100,000 levels deep (msgspec raises RecursionError).
    add("deep_100k_arrays", b"[" * DEEP + b"]" * DEEP, _whole("too_deep"))
    add("deep_100k_objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP, _whole("too_deep"))
    add("deep_100k_in_a_field", ev("deep-field", model=b"[" * DEEP + b"]" * DEEP), _whole("too_deep"))
    add("deep_100k_in_a_batch_item", b"[" + ev("deep-ok") + b"," + b"[" * DEEP + b"]" * DEEP + b"]",
        _whole("too_deep"), "one item too deep: the batch cannot be split")
    # Numbers.
    add("number_1e400_tokens", ev("n-1e400", input_tokens=b"1e400"), _bad("invalid_field"))
    add("number_minus_zero_is_zero", ev("n-m0", output_tokens=b"-0"), GOOD, "-0 is the integer 0",
        output_tokens=0)
    add("number_minus_zero_float", ev("n-m0f", output_tokens=b"-0.0"), _bad("invalid_field"))
    add("number_nan", ev("n-nan", input_tokens=b"NaN"), _whole("invalid_json"))
    add("number_infinity", ev("n-inf", input_tokens=b"Infinity"), _whole("invalid_json"))
    add("number_minus_infinity", ev("n-minf", output_tokens=b"-Infinity"), _whole("invalid_json"))
    add("integer_above_2_64_tokens", ev("n-2e64", input_tokens=str(2**64 + 1).encode()), _bad("invalid_field"))
    add("integer_2_64_cache", ev("n-cache", cache_read_tokens=str(2**64).encode()), _bad("invalid_field"))
    add("integer_above_2_64_timestamp", ev("n-ts", timestamp=str(2**64 + 1).encode()), _bad("invalid_field"))
    add("integer_5000_digits", ev("n-5000", latency_ms=b"9" * 5000), _bad("invalid_field"),
        "beyond Python's int-from-text digit limit")
    add("cost_as_number_1e400", ev("n-cost", gateway_cost_usd=b"1e400"), _bad("invalid_field"))
    add("negative_tokens", ev("n-neg", input_tokens=b"-1"), _bad("invalid_field"))
    # Duplicate keys: the last one wins, as in the contract decoder (and Python's json).
    add("duplicate_key_tokens", ev("dup-tok")[:-1] + b',"input_tokens":7}', GOOD, "input_tokens 10 then 7",
        input_tokens=7)
    add("duplicate_key_request_id", ev("dup-rid")[:-1] + b',"request_id":"h-dup-rid-2"}', GOOD,
        request_id="h-dup-rid-2")
    # Encodings and framing.
    add("utf8_bom", b"\xef\xbb\xbf" + ev("bom"), _whole("invalid_json"))
    add("utf16_body", ev("utf16").decode().encode("utf-16"), _whole("invalid_json"), "with its BOM")
    add("ten_mb_model", ev("10mb-model", model=b'"' + b"m" * TEN_MB + b'"'), _bad("invalid_field"))
    add("ten_mb_request_id", ev("10mb-rid", request_id=b'"' + b"r" * TEN_MB + b'"'), _bad("invalid_field"))
    add("empty_bytes", b"", _whole("empty_message"))
    add("whitespace_only", b" \n\t ", _whole("empty_message"))
    add("null", b"null", _whole("not_an_object"))
    add("true", b"true", _whole("not_an_object"))
    add("a_number", b"7", _whole("not_an_object"))
    add("a_string", b'"event"', _whole("not_an_object"))
    add("empty_array", b"[]", _whole("empty_batch"))
    add("array_of_null", b"[null]", _bad("not_an_object"))
    add("empty_object", b"{}", _bad("missing_field"))
    add("truncated_event", ev("trunc")[:40], _whole("invalid_json"))
    add("trailing_garbage", ev("trail") + b" x", _whole("invalid_json"))
    add("two_objects_back_to_back", ev("two-a") + ev("two-b"), _whole("invalid_json"))
    add("raw_nul_in_string", ev("nul", model=b'"m\x00"'), _whole("invalid_json"), "an unescaped control byte")
    # Batches mixing good and bad items: the good ones still count.
    mixed = [ev("mix-1"), ev("mix-bad-utf8", model=b'"' + BAD_UTF8 + b'"'), ev("mix-2"), b"null",
             b'{"model": 1}', ev("mix-3"), ev("mix-neg", input_tokens=b"-1"), b"[1]"]
    add("batch_mixing_good_and_bad", b"[" + b",".join(mixed) + b"]",
        Expectation(good=3, bad=5, reasons=frozenset({"invalid_encoding", "not_an_object", "missing_field",
                                                      "invalid_field"})), ids=("h-mix-1", "h-mix-2", "h-mix-3"))
    add("batch_with_a_lone_surrogate", b"[" + ev("mix-s1") + b"," + ev("mix-s2", model=b'"\\udfff"') + b"]",
        _whole(*lone), "a syntax error in one item: the batch cannot be split")
    # Time bounds (the worker's defaults: 7 days late, 5 minutes early).
    add("future_timestamp", ev("future", timestamp=str(now_ms + HOUR_MS).encode()), _bad("future_timestamp"))
    add("too_late", ev("late", timestamp=str(now_ms - 8 * 24 * HOUR_MS).encode()), _bad("too_late"))
    add("epoch_seconds_not_ms", ev("secs", timestamp=str(now_ms // 1000).encode()), _bad("too_late"))
    return cases


# Hostile JSON values put into every field of every route's valid body.
VALUES: dict[str, bytes] = {
    "bad_utf8": b'"a' + BAD_UTF8 + b'"',
    "lone_surrogate": b'"\\ud800"',
    "deep_100k": b"[" * DEEP + b"]" * DEEP,
    "1e400": b"1e400",
    "1e999999999": b"1e999999999",
    "minus_zero": b"-0",
    "above_2_64": str(2**64 + 1).encode(),
    "5000_digits": b"9" * 5000,
    "5000_digit_decimal": b"9" * 5000 + b".5",
    "NaN": b"NaN",
    "null": b"null",
    "true": b"true",
    "empty_string": b'""',
    "empty_array": b"[]",
    "array": b'[1, "x", {"a": null}]',
    "object": b'{"stringValue": [1], "intValue": {"a": 1}}',
    "huge_string": b'"' + b"s" * 1_000_000 + b'"',
}
_HOLE = "@@hostile@@"


def route_templates(now_ms: int) -> dict[str, tuple[str, str, dict]]:
    """route -> (path, content type, a valid body as a dict) for every adapter route."""
    seconds = now_ms / 1000
    openai = {"api_key_id": KEY, "request_id": "h-route-openai", "timestamp": now_ms, "provider": "openai",
              "org_id": "o", "project_id": "p", "status": "ok", "latency_ms": 5, "gateway_cost_usd": "0.001",
              "response": {"id": "chatcmpl-1", "model": "gpt-4o", "created": int(seconds), "usage": {
                  "prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2,
                                                                                         "audio_tokens": 3},
                  "completion_tokens_details": {"reasoning_tokens": 1, "audio_tokens": 1}},
                  "service_tier": "default"}}
    anthropic = {"api_key_id": KEY, "request_id": "h-route-anthropic", "timestamp": now_ms,
                 "response": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {
                     "input_tokens": 3, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 1,
                     "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1},
                     "server_tool_use": {"web_search_requests": 1}, "output_tokens": 2,
                     "output_tokens_details": {"thinking_tokens": 1}, "service_tier": "standard"}}}
    gemini = {"api_key_id": KEY, "request_id": "h-route-gemini", "timestamp": now_ms,
              "response": {"modelVersion": "gemini-2.5-flash", "responseId": "r1", "usageMetadata": {
                  "promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 2,
                  "cachedContentTokenCount": 4, "toolUsePromptTokenCount": 1,
                  "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}, {"modality": "AUDIO", "tokenCount": 2}],
                  "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
                  "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]}}}
    litellm = {"id": "h-route-litellm", "model": "gpt-4o", "custom_llm_provider": "openai",
               "startTime": seconds - 1, "endTime": seconds, "prompt_tokens": 10, "completion_tokens": 2,
               "response_cost": 0.00012, "status": "success",
               "metadata": {"user_api_key_hash": KEY, "user_api_key_org_id": "o", "user_api_key_team_id": "t",
                            "usage_object": {"prompt_tokens_details": {
                                "cached_tokens": 1, "audio_tokens": 2,
                                "cache_creation_token_details": {"ephemeral_1h_input_tokens": 0}},
                                "completion_tokens_details": {"reasoning_tokens": 1},
                                "server_tool_use": {"web_search_requests": 1}}}}
    end_ns = now_ms * 1_000_000

    def attr(key: str, kind: str, value) -> dict:
        return {"key": key, "value": {kind: value}}

    otlp = {"resourceSpans": [{"resource": {"attributes": [attr("meterline.api_key_id", "stringValue", KEY)]},
                               "scopeSpans": [{"spans": [{
                                   "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                                   "startTimeUnixNano": str(end_ns - 10**9), "endTimeUnixNano": str(end_ns),
                                   "status": {"code": 1},
                                   "attributes": [attr("gen_ai.operation.name", "stringValue", "chat"),
                                                  attr("gen_ai.request.model", "stringValue", "gpt-4o"),
                                                  attr("gen_ai.provider.name", "stringValue", "openai"),
                                                  attr("gen_ai.usage.input_tokens", "intValue", "10"),
                                                  attr("gen_ai.usage.output_tokens", "intValue", 3),
                                                  attr("gen_ai.usage.cache_read.input_tokens", "doubleValue", 2.0),
                                                  attr("gen_ai.usage.input_audio_tokens", "intValue", "1"),
                                                  attr("openai.response.service_tier", "stringValue", "flex")]}]}]}]}
    # The CloudEvent's id is the request id; the time comes from the response's `created`.
    data = {name: value for name, value in openai.items() if name not in ("request_id", "timestamp")}
    cloudevent = {"specversion": "1.0", "id": "h-route-ce", "source": "/gw", "type": "dev.meterline.openai.v1",
                  "datacontenttype": "application/json", "data": data}
    return {
        "openai": ("/v1/openai", "application/json", openai),
        "anthropic": ("/v1/anthropic", "application/json", anthropic),
        "gemini": ("/v1/gemini", "application/json", gemini),
        "litellm": ("/v1/litellm", "application/json", litellm),
        "otlp": ("/v1/otlp/v1/traces", "application/json", otlp),
        "cloudevents": ("/v1/cloudevents", "application/cloudevents+json", cloudevent),
        "events": ("/v1/events", "application/json", json.loads(event_bytes("route-events", now_ms))),
    }


def _leaf_paths(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_paths(item, path + (index,))
    else:
        yield path


def leaf_paths(document) -> list[tuple]:
    """Paths (keys and indexes) of every scalar in a JSON document."""
    return list(_leaf_paths(document))


def with_raw_values(document, raw: dict[tuple, bytes]) -> bytes:
    """``document`` as JSON bytes with the scalar at each path replaced by raw JSON bytes (any bytes)."""
    copy = json.loads(json.dumps(document))
    holes = {}
    for number, path in enumerate(raw):
        target = copy
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = holes[path] = f"{_HOLE}{number}"
    text = json.dumps(copy).encode()
    for path, value in raw.items():
        text = text.replace(json.dumps(holes[path]).encode(), value)
    return text


def route_cases(route: str, now_ms: int, values: dict[str, bytes] = VALUES) -> list[tuple[str, bytes]]:
    """(name, body) for every field of ``route``'s valid body holding every hostile value."""
    _, _, template = route_templates(now_ms)[route]
    return [(f"{route}:{'.'.join(map(str, path))}={value_name}", with_raw_values(template, {path: value}))
            for path in leaf_paths(template) for value_name, value in values.items()]


def write_corpus(directory: Path, now_ms: int) -> None:
    """The contract cases as files: <name>.bin and expectations.json ({name: expectation})."""
    directory.mkdir(parents=True, exist_ok=True)
    expectations = {}
    for case in contract_cases(now_ms):
        (directory / f"{case.name}.bin").write_bytes(case.body)
        expectations[case.name] = {**asdict(case.expect), "reasons": sorted(case.expect.reasons),
                                   "note": case.note, "accepted_ids": case.accepted_ids, "produced": case.produced}
    (directory / "expectations.json").write_text(json.dumps(expectations, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    import time

    write_corpus(Path(sys.argv[1]), time.time_ns() // 1_000_000)
