"""Gateway-format adapters: every published example maps to exactly the expected contract events.

Examples live in schemas/examples/adapters/<adapter>/: ``<case>.json`` (or ``.ndjson``) is a request body,
``<case>.expected.json`` the events the collector produces for it (as produced: defaults omitted), the
records it rejects (index and reason) and, for OTLP, the spans it skips.
"""

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

from pipeline.contract import ContractDecoder, hash_api_key
from pipeline.ingest.adapters.anthropic import AnthropicAdapter
from pipeline.ingest.adapters.base import NDJSON, ItemError, cost_text, seconds_to_ms
from pipeline.ingest.adapters.cloudevents import BATCH, STRUCTURED, CloudEventsAdapter
from pipeline.ingest.adapters.contract import ContractAdapter
from pipeline.ingest.adapters.gemini import GeminiAdapter
from pipeline.ingest.adapters.litellm import LiteLLMAdapter
from pipeline.ingest.adapters.openai import OpenAIAdapter
from pipeline.ingest.adapters.otlp import OtlpTracesAdapter
from pipeline.config import RollupSettings
from pipeline.ingest.validation import EventValidator, TimeWindow
from schemas import EXAMPLES_DIR, USAGE_EVENT_SCHEMA

ADAPTERS = {"openai": OpenAIAdapter(), "anthropic": AnthropicAdapter(), "litellm": LiteLLMAdapter(),
            "otlp": OtlpTracesAdapter(), "cloudevents": CloudEventsAdapter(), "gemini": GeminiAdapter()}
EXAMPLES = sorted(p for p in (EXAMPLES_DIR / "adapters").glob("*/*") if ".expected." not in p.name)
SCHEMA = json.loads(USAGE_EVENT_SCHEMA.read_text())
# The examples are of 2026-11-25 ~10:15-10:21 UTC; judged as the collector would an hour later, with the
# worker's default time bounds (7 days late, 5 minutes early).
EXAMPLES_NOW_MS = 1_795_605_300_000
VALIDATOR = EventValidator(ContractDecoder(), TimeWindow.of(RollupSettings(), lambda: EXAMPLES_NOW_MS))


def content_type(path: Path) -> str:
    if path.suffix == ".ndjson":
        return NDJSON
    if path.parent.name == "cloudevents":
        return BATCH if path.read_bytes().lstrip().startswith(b"[") else STRUCTURED
    return "application/json"


def run(adapter, body: bytes, ctype: str = "application/json"):
    mapped = adapter.map(body, ctype)
    return mapped, VALIDATOR.judge(mapped)


def test_every_adapter_has_examples():
    assert {p.parent.name for p in EXAMPLES} == set(ADAPTERS)
    for path in EXAMPLES:
        assert path.with_name(f"{path.stem}.expected.json").is_file(), path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_maps_to_the_expected_contract_events(path: Path):
    expected = json.loads(path.with_name(f"{path.stem}.expected.json").read_text())
    mapped, verdict = run(ADAPTERS[path.parent.name], path.read_bytes(), content_type(path))
    events = [json.loads(value) for _, value in verdict.accepted]
    assert events == expected["events"]  # exact token numbers, ids, timestamps, costs
    assert [(p.index, p.reason) for p in verdict.rejected] == [(r["index"], r["reason"]) for r in expected["rejected"]]
    assert mapped.skipped == expected.get("skipped", 0)
    for (key, _), event in zip(verdict.accepted, events):
        jsonschema.validate(event, SCHEMA)  # what is produced obeys the published contract
        assert key == event["api_key_id"]


def test_anthropic_input_is_the_sum_of_its_disjoint_buckets():
    body = json.dumps({"api_key_id": "k", "timestamp": 1795602000000, "response": {
        "id": "msg_1", "model": "claude-opus-4-1", "usage": {
            "input_tokens": 3, "cache_creation_input_tokens": 40, "cache_read_input_tokens": 500,
            "output_tokens": 9}}}).encode()
    [(_, value)] = run(AnthropicAdapter(), body)[1].accepted
    event = json.loads(value)
    assert (event["input_tokens"], event["cache_read_tokens"], event["cache_write_tokens"]) == (543, 500, 40)
    assert event["output_tokens"] == 9 and "reasoning_tokens" not in event


def test_openai_cached_tokens_are_counted_once_inside_input():
    body = json.dumps({"api_key_id": "k", "response": {"id": "c1", "model": "gpt-4o", "created": 1795601700,
        "usage": {"prompt_tokens": 1000, "completion_tokens": 50,
                  "prompt_tokens_details": {"cached_tokens": 800},
                  "completion_tokens_details": {"reasoning_tokens": 30}}}}).encode()
    [(_, value)] = run(OpenAIAdapter(), body)[1].accepted
    event = json.loads(value)
    assert (event["input_tokens"], event["cache_read_tokens"]) == (1000, 800)
    assert (event["output_tokens"], event["reasoning_tokens"]) == (50, 30)


def one_event(adapter, envelope: dict) -> dict:
    [(_, value)] = run(adapter, json.dumps(envelope).encode())[1].accepted
    return json.loads(value)


def test_anthropic_one_hour_cache_writes_are_read_apart():
    event = one_event(AnthropicAdapter(), {"api_key_id": "k", "timestamp": 1795602000000, "response": {
        "id": "msg_1", "model": "claude-sonnet-4-5", "usage": {
            "input_tokens": 10, "cache_creation_input_tokens": 100_000, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100_000},
            "output_tokens": 100}}})
    assert (event["input_tokens"], event["cache_write_tokens"]) == (100_010, 100_000)
    assert event["usage"] == {"cache_write_1h_tokens": 100_000}


def test_anthropic_thinking_tokens_reported_apart_become_reasoning():
    event = one_event(AnthropicAdapter(), {"api_key_id": "k", "timestamp": 1795602000000, "response": {
        "id": "msg_2", "model": "claude-sonnet-4-5", "usage": {
            "input_tokens": 20, "output_tokens": 900, "output_tokens_details": {"thinking_tokens": 700},
            "server_tool_use": {"web_search_requests": 3}, "service_tier": "batch"}}})
    assert (event["output_tokens"], event["reasoning_tokens"]) == (900, 700)
    assert event["usage"] == {"web_searches": 3} and event["service_tier"] == "batch"


def test_openai_audio_tokens_are_parts_of_prompt_and_completion():
    event = one_event(OpenAIAdapter(), {"api_key_id": "k", "response": {
        "id": "c2", "model": "gpt-audio", "created": 1795601700, "service_tier": "priority", "usage": {
            "prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"audio_tokens": 800},
            "completion_tokens_details": {"audio_tokens": 400}}}})
    assert (event["input_tokens"], event["output_tokens"]) == (1000, 500)
    assert event["usage"] == {"input_audio_tokens": 800, "output_audio_tokens": 400}
    assert event["service_tier"] == "priority"


def test_gemini_thoughts_are_added_to_output_not_found_inside_it():
    event = one_event(GeminiAdapter(), {"api_key_id": "k", "timestamp": 1795602000000, "response": {
        "modelVersion": "gemini-2.5-pro", "responseId": "g1", "usageMetadata": {
            "promptTokenCount": 100, "candidatesTokenCount": 40, "thoughtsTokenCount": 60,
            "toolUsePromptTokenCount": 5, "totalTokenCount": 205}}})
    assert (event["input_tokens"], event["output_tokens"], event["reasoning_tokens"]) == (105, 100, 60)
    assert event["usage"] == {"input_tool_tokens": 5}


def test_a_part_bigger_than_its_whole_is_rejected_naming_the_unit():
    _, verdict = run(AnthropicAdapter(), json.dumps({"api_key_id": "k", "timestamp": 1795602000000, "response": {
        "id": "m", "model": "claude-sonnet-4-5", "usage": {
            "input_tokens": 1, "cache_creation_input_tokens": 10, "output_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 8, "ephemeral_1h_input_tokens": 8}}}}).encode())
    [problem] = verdict.rejected
    assert problem.reason == "inconsistent_tokens"
    assert "usage.cache_write_5m_tokens 8, usage.cache_write_1h_tokens 8" in problem.detail
    assert "cache_write_tokens (10)" in problem.detail


NDJSON_LINES = [json.dumps(p) for p in json.loads(
    (EXAMPLES_DIR / "adapters/litellm/standard-logging-payloads.json").read_text())[:2]]


@pytest.mark.parametrize("body, accepted", [
    ("\n".join(NDJSON_LINES), 2),  # LiteLLM's ndjson log format, labelled application/json
    ("\n".join(NDJSON_LINES) + "\n", 2),
    ("\n".join([NDJSON_LINES[0], "{not json", NDJSON_LINES[1]]), 2),  # a bad line is rejected alone
])
def test_ndjson_labelled_as_json_is_read_line_by_line(body: str, accepted: int):
    mapped, verdict = run(LiteLLMAdapter(), body.encode(), "application/json")
    assert len(verdict.accepted) == accepted
    assert [p.reason for p in verdict.rejected] == (["invalid_json"] if "{not json" in body else [])


@pytest.mark.parametrize("body", [
    NDJSON_LINES[0] + " trailing",  # one line: not NDJSON, just broken JSON
    "{\n  \"id\": 1,\n  \"model\": \n}",  # pretty-printed but broken: its first line is no object
    "[1, 2]\n[3]",  # lines that are not objects
])
def test_broken_json_that_is_not_ndjson_is_still_refused_whole(body: str):
    from pipeline.ingest.adapters.base import BodyError
    with pytest.raises(BodyError):
        LiteLLMAdapter().map(body.encode(), "application/json")


@pytest.mark.parametrize("value, text", [
    (Decimal("2.85e-05"), "0.0000285"), (Decimal("0"), "0"), (0, "0"), (Decimal("0.1"), "0.1"),
    (Decimal("12.50"), "12.5"), (Decimal("1E+2"), "100"), ("0.000001", "0.000001"),
    (Decimal("0.0213456789012345678901"), "0.021345678901234568"),  # 18 places, as the contract allows
])
def test_costs_become_exact_decimal_strings(value, text):
    assert cost_text(value, "cost") == text


@pytest.mark.parametrize("value", [Decimal("-1"), True, "abc", Decimal("NaN"), [1]])
def test_bad_costs_are_rejected(value):
    with pytest.raises(ItemError):
        cost_text(value, "cost")


def test_fractional_epoch_seconds_become_exact_milliseconds():
    assert seconds_to_ms(Decimal("1795601700.004611"), "t") == 1795601700004
    assert seconds_to_ms(1795601700, "t") == 1795601700000
    with pytest.raises(ItemError):
        seconds_to_ms(Decimal("-1"), "t")


SECRET = "sk-live-TOPSECRET-0123456789"
LEAKY = {"Authorization": f"Bearer {SECRET}", "api_key": SECRET, "headers": {"authorization": f"Bearer {SECRET}"}}


def _with_secrets(record: dict) -> dict:
    return {**record, **LEAKY, "metadata": {**record.get("metadata", {}), **LEAKY}}


def _otlp_with_secrets() -> bytes:
    document = json.loads((EXAMPLES_DIR / "adapters/otlp/genai-spans.json").read_text())
    leak = [{"key": "http.request.header.authorization", "value": {"stringValue": f"Bearer {SECRET}"}},
            {"key": "api_key", "value": {"stringValue": SECRET}}]
    for resource_spans in document["resourceSpans"]:
        resource_spans["resource"]["attributes"] += leak
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                span["attributes"] += leak
    return json.dumps(document).encode()


def _secret_cases():
    event = {"request_id": "r1", "api_key_id": "k1", "model": "gpt-4o", "timestamp": 1795601700000,
             "input_tokens": 5, "output_tokens": 1}
    examples = EXAMPLES_DIR / "adapters"
    openai_envelope = json.loads((examples / "openai/chat-completions.json").read_text())
    anthropic_envelope = json.loads((examples / "anthropic/message-with-cache.json").read_text())
    gemini_envelope = json.loads((examples / "gemini/generate-content.json").read_text())
    litellm_payloads = json.loads((examples / "litellm/standard-logging-payloads.json").read_text())
    cloudevent = json.loads((examples / "cloudevents/structured.json").read_text())
    leaky_cloudevent = {**_with_secrets(cloudevent), "data": _with_secrets(cloudevent["data"])}
    cases = [
        ("events", ContractAdapter(), json.dumps([_with_secrets(event)]), "application/json"),
        ("openai", OpenAIAdapter(), json.dumps(_with_secrets(openai_envelope)), "application/json"),
        ("anthropic", AnthropicAdapter(), json.dumps(_with_secrets(anthropic_envelope)), "application/json"),
        ("gemini", GeminiAdapter(), json.dumps(_with_secrets(gemini_envelope)), "application/json"),
        ("litellm", LiteLLMAdapter(), json.dumps([_with_secrets(p) for p in litellm_payloads]), "application/json"),
        ("otlp", OtlpTracesAdapter(), _otlp_with_secrets().decode(), "application/json"),
        ("cloudevents", CloudEventsAdapter(), json.dumps(leaky_cloudevent), STRUCTURED),
    ]
    return [pytest.param(*case, id=case[0]) for case in cases]


@pytest.mark.parametrize("name, adapter, body, ctype", _secret_cases())
def test_secrets_in_a_payload_never_reach_what_is_produced(name, adapter, body, ctype):
    assert SECRET in body
    _, verdict = run(adapter, body.encode(), ctype)
    assert verdict.accepted, verdict.rejected
    produced = b"".join(key.encode() + value for key, value in verdict.accepted)
    assert SECRET.encode() not in produced and b"Bearer" not in produced
    # Where the secret sat in the contract's own `api_key` field, only its hash is kept, as the id.
    if name == "events":
        assert json.loads(verdict.accepted[0][1])["api_key_id"] == "k1"
    assert SECRET not in json.dumps([(p.reason, p.detail) for p in verdict.rejected])


def test_a_raw_secret_alone_becomes_its_hash():
    body = json.dumps({"api_key": SECRET, "response": {"id": "c1", "model": "gpt-4o", "created": 1795601700,
                                                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}}})
    [(key, value)] = run(OpenAIAdapter(), body.encode())[1].accepted
    assert key == hash_api_key(SECRET) == json.loads(value)["api_key_id"]
    assert SECRET.encode() not in value


@pytest.mark.parametrize("field, value", [("response_cost", "1e999999999"), ("endTime", "1e999999999"),
                                          ("endTime", 1e300)])
def test_absurd_magnitudes_are_rejected_without_being_expanded(field, value):
    payload = json.loads((EXAMPLES_DIR / "adapters/litellm/standard-logging-payloads.json").read_text())[0]
    body = json.dumps({**payload, field: value}).replace(f'"{value}"', str(value)).encode()
    _, verdict = run(LiteLLMAdapter(), body)
    assert [p.reason for p in verdict.rejected] == ["invalid_field"]


def test_absurd_otlp_integers_are_rejected_without_being_expanded():
    document = json.loads((EXAMPLES_DIR / "adapters/otlp/genai-spans.json").read_text())
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["endTimeUnixNano"] = "1e999999999"
    _, verdict = run(OtlpTracesAdapter(), json.dumps(document).encode())
    assert (verdict.rejected[0].index, verdict.rejected[0].reason) == (0, "invalid_field")


def _openai_envelope(created: int, prompt: int, completion: int) -> dict:
    return {"api_key_id": "key_e1", "response": {"id": "chatcmpl-424", "model": "gpt-4o", "created": created,
                                                 "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}}


def test_a_reused_upstream_id_does_not_merge_distinct_requests_and_a_retry_repeats_its_id():
    """Some OpenAI-compatible servers return the same id for different requests: the derived id adds the
    creation time and the usage, so distinct requests stay distinct and a retried envelope repeats its id."""
    ten, five_past = 1795600800, 1795601100  # 2026-11-25T10:00Z and 10:05Z
    first, second = _openai_envelope(ten, 100, 10), _openai_envelope(five_past, 200, 20)
    _, verdict = run(ADAPTERS["openai"], json.dumps([first, second, first]).encode())
    ids = [json.loads(value)["request_id"] for _, value in verdict.accepted]
    usage = {"completion_tokens": 10, "prompt_tokens": 100}
    digest = hashlib.sha256(json.dumps(usage, separators=(",", ":"), sort_keys=True).encode()).hexdigest()[:8]
    assert ids[0] == f"chatcmpl-424@{ten}@{digest}"
    assert ids[0] != ids[1] and ids[2] == ids[0]
    tokens = [(json.loads(v)["input_tokens"], json.loads(v)["output_tokens"]) for _, v in verdict.accepted[:2]]
    assert tokens == [(100, 10), (200, 20)]


def test_an_anthropic_message_id_is_scoped_by_its_envelope_time():
    envelope = {"api_key_id": "k", "timestamp": "2026-11-25T10:00:00Z",
                "response": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 5, "output_tokens": 1}}}
    later = dict(envelope, timestamp="2026-11-25T10:05:00Z")
    _, verdict = run(ADAPTERS["anthropic"], json.dumps([envelope, later, envelope]).encode())
    ids = [json.loads(value)["request_id"] for _, value in verdict.accepted]
    assert ids[0] != ids[1] and ids[0] == ids[2] and ids[0].startswith("msg_1@2026-11-25T10:00:00Z@")


def test_a_cloudevent_is_identified_by_source_and_id_and_a_gateway_id_wins():
    def cloudevent(source: str, data_extra: dict) -> dict:
        return {"specversion": "1.0", "id": "e-1", "source": source, "type": "dev.meterline.openai.v1",
                "data": {**_openai_envelope(1795600800, 1, 1), **data_extra}}
    body = json.dumps([cloudevent("/a", {}), cloudevent("/b", {}), cloudevent("/a", {"request_id": "gw-9"})])
    _, verdict = run(ADAPTERS["cloudevents"], body.encode(), BATCH)
    assert [json.loads(value)["request_id"] for _, value in verdict.accepted] == ["e-1@/a", "e-1@/b", "gw-9"]


def test_a_derived_id_longer_than_the_contract_allows_becomes_a_hash():
    from pipeline.ingest.adapters.base import derived_request_id
    long_id = derived_request_id("x" * 120, "2026-11-25T10:00:00Z")
    assert long_id == "sha256:" + hashlib.sha256(("x" * 120 + "@2026-11-25T10:00:00Z").encode()).hexdigest()
    assert derived_request_id(None, "t") is None and derived_request_id("", "t") is None
