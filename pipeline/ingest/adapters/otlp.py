"""OpenTelemetry GenAI spans received as OTLP/HTTP JSON (an ExportTraceServiceRequest).

A record is one span, numbered in document order (resourceSpans -> scopeSpans -> spans). Only inference
spans carry usage that belongs to one LLM request: spans whose ``gen_ai.operation.name`` is an inference
operation (or is absent, as in older instrumentations) and that hold ``gen_ai.usage.input_tokens`` or
``gen_ai.usage.output_tokens``. Everything else (HTTP spans, tools, and ``invoke_agent`` spans, which
repeat the sum of their children's usage) is skipped, never counted twice.

Semantic conventions: ``gen_ai.usage.input_tokens`` SHOULD include all input tokens, cached ones
included, and the cache read/creation counts SHOULD be included in it; reasoning SHOULD be included in
``gen_ai.usage.output_tokens``. Those are the contract's semantics, so the numbers are copied as they are.
The conventions name no other unit; an instrumentation that reports one as ``gen_ai.usage.<unit>`` with a
genai-prices unit name (``gen_ai.usage.input_audio_tokens``, ``gen_ai.usage.web_searches``) has it read into the
event's ``usage`` object, with the same part-of rules. The service tier comes from ``openai.response.service_tier``
(and its older name ``gen_ai.openai.response.service_tier``) or ``meterline.service_tier``.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import BodyError, ItemError, Mapped, first, map_items, parse_document, \
    without_none
from pipeline.ingest.adapters.otlp_values import Attributes, attributes_of, int_of
from pipeline.units import USAGE_UNITS

INFERENCE_OPERATIONS = frozenset({"chat", "generate_content", "text_completion", "embeddings"})
USAGE_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
STATUS_ERROR = (2, "STATUS_CODE_ERROR")
# meterline's own attributes, looked up on the span first, then on its resource.
REQUEST_ID, API_KEY_ID = "meterline.request_id", "meterline.api_key_id"
ORG_ID, PROJECT_ID = "meterline.org_id", "meterline.project_id"
SERVICE_TIER_KEYS = ("meterline.service_tier", "openai.response.service_tier", "gen_ai.openai.response.service_tier")
USAGE_PREFIX = "gen_ai.usage."
# gen_ai.usage.<unit> attributes read into the event's usage object (genai-prices names, pipeline/units.py).
EXTRA_UNIT_KEYS = {USAGE_PREFIX + unit: unit for unit in USAGE_UNITS}


class OtlpTracesAdapter:
    name = "otlp"

    def map(self, body: bytes, content_type: str) -> Mapped:
        document = parse_document(body)
        if not isinstance(document, dict):
            raise BodyError("not_an_object", "an ExportTraceServiceRequest must be a JSON object")
        return map_items(_spans(document), lambda resource_and_span: map_span(resource_and_span[1],
                                                                              resource_and_span[0]))


def _spans(document: dict[str, Any]):
    """(resource attributes, span) for every span, in document order; a level that is not an object holds
    no spans (a span that is not an object is rejected by :func:`map_span`)."""
    for resource_spans in map(_dict, _list(document.get("resourceSpans"))):
        resource = attributes_of(_dict(resource_spans.get("resource")).get("attributes"))
        for scope_spans in map(_dict, _list(resource_spans.get("scopeSpans"))):
            for span in _list(scope_spans.get("spans")):
                yield resource, span


def map_span(span: Any, resource: Attributes) -> dict[str, Any] | None:
    if not isinstance(span, dict):
        raise ItemError("not_an_object", "a span must be a JSON object")
    attrs = attributes_of(span.get("attributes"))
    operation = attrs.get("gen_ai.operation.name")
    if not isinstance(operation, (str, type(None))):
        raise ItemError("invalid_field", "`gen_ai.operation.name` must be a string")
    if not any(key in attrs for key in USAGE_KEYS) or (operation is not None and operation not in INFERENCE_OPERATIONS):
        return None
    end_ns = int_of(span.get("endTimeUnixNano"), "endTimeUnixNano")
    start_ns = int_of(span.get("startTimeUnixNano"), "startTimeUnixNano")
    event = {
        "request_id": first(attrs.get(REQUEST_ID), _span_request_id(span)),
        "api_key_id": first(attrs.get(API_KEY_ID), resource.get(API_KEY_ID)),
        "model": first(attrs.get("gen_ai.response.model"), attrs.get("gen_ai.request.model")),
        "provider": first(attrs.get("gen_ai.provider.name"), attrs.get("gen_ai.system")),
        "timestamp": None if end_ns is None else end_ns // 1_000_000,
        # An embeddings span has no output tokens; a span with only outputs has no inputs.
        "input_tokens": first(_tokens(attrs, "gen_ai.usage.input_tokens"), 0),
        "output_tokens": first(_tokens(attrs, "gen_ai.usage.output_tokens"), 0),
        "cache_read_tokens": _tokens(attrs, "gen_ai.usage.cache_read.input_tokens"),
        "cache_write_tokens": _tokens(attrs, "gen_ai.usage.cache_creation.input_tokens"),
        "reasoning_tokens": _tokens(attrs, "gen_ai.usage.reasoning.output_tokens"),
        "org_id": first(attrs.get(ORG_ID), resource.get(ORG_ID)),
        "project_id": first(attrs.get(PROJECT_ID), resource.get(PROJECT_ID)),
        "status": "error" if _dict(span.get("status")).get("code") in STATUS_ERROR else "ok",
        "latency_ms": None if end_ns is None or start_ns is None or end_ns < start_ns
        else (end_ns - start_ns) // 1_000_000,
        "service_tier": first(*(attrs.get(key) for key in SERVICE_TIER_KEYS)),
        "usage": _extra_units(attrs),
    }
    return without_none(event)


def _extra_units(attrs: Attributes) -> dict[str, int] | None:
    units = {}
    for key, unit in EXTRA_UNIT_KEYS.items():
        count = _tokens(attrs, key)
        if count is not None and count < 0:
            raise ItemError("invalid_field", f"`{key}` must be a non-negative integer")
        if count:
            units[unit] = count
    return units or None


def _span_request_id(span: dict[str, Any]) -> str | None:
    """``<traceId>:<spanId>``: a 64-bit span id alone could collide across traces; an exporter's retry
    repeats both, so the worker's deduplication still recognises it."""
    trace_id, span_id = span.get("traceId"), span.get("spanId")
    if not (isinstance(trace_id, str) and isinstance(span_id, str) and trace_id and span_id):
        return None
    return f"{trace_id.lower()}:{span_id.lower()}"


def _tokens(attrs: Attributes, key: str) -> int | None:
    return int_of(attrs.get(key), key)


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
