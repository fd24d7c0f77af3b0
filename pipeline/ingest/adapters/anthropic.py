"""Anthropic Messages responses wrapped in the same envelope as OpenAI's (see adapters/openai.py).

Anthropic's ``usage.input_tokens`` EXCLUDES the cache: the three input buckets are disjoint. The contract's
``input_tokens`` holds all input, so it is their sum; the cache buckets are copied as its parts, cache writes
split by lifetime (``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``: a 1-hour write
costs twice the input price, a 5-minute one 1.25 times). Server tools: ``server_tool_use.web_search_requests``
becomes ``web_searches`` ($10 per 1,000). Thinking is billed inside ``output_tokens``; when a response reports it
apart (``output_tokens_details.thinking_tokens``) it becomes ``reasoning_tokens``. The mapping is genai-prices'
own Anthropic extractor's. ``usage.service_tier`` (``standard``, ``priority``, ``batch``) selects tier prices,
and ``usage.speed`` ``fast`` (fast mode) the ``fast`` tier. A Message has no creation time: the envelope's
``timestamp`` is required.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import ItemError, Mapped, derived_request_id, first, map_each, parse_records, \
    read_units, response_with_usage, unit_fields, usage_digest, without_none
from pipeline.ingest.adapters.openai import ENVELOPE_FIELDS

MESSAGES = (
    (("input_tokens",), "input_tokens"),
    (("cache_creation_input_tokens",), "input_tokens"),
    (("cache_read_input_tokens",), "input_tokens"),
    (("cache_creation_input_tokens",), "cache_write_tokens"),
    (("cache_creation", "ephemeral_5m_input_tokens"), "cache_write_5m_tokens"),
    (("cache_creation", "ephemeral_1h_input_tokens"), "cache_write_1h_tokens"),
    (("cache_read_input_tokens",), "cache_read_tokens"),
    (("server_tool_use", "web_search_requests"), "web_searches"),
    (("output_tokens",), "output_tokens"),
    (("output_tokens_details", "thinking_tokens"), "output_reasoning_tokens"),
)


class AnthropicAdapter:
    name = "anthropic"

    def map(self, body: bytes, content_type: str) -> Mapped:
        return map_each(parse_records(body, content_type), map_envelope)


def map_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    response, usage = response_with_usage(envelope, "the Anthropic Message")
    event = {name: envelope.get(name) for name in ENVELOPE_FIELDS}
    event.update(
        request_id=first(envelope.get("request_id"), derived_request_id(
            response.get("id"), envelope.get("timestamp"), usage_digest(usage))),
        model=first(envelope.get("model"), response.get("model")),
        timestamp=envelope.get("timestamp"),
        provider=first(envelope.get("provider"), "anthropic"),
        service_tier=first(envelope.get("service_tier"), service_tier(usage)),
        **usage_tokens(usage),
    )
    return without_none(event)


def usage_tokens(usage: dict[str, Any]) -> dict[str, Any]:
    if usage.get("input_tokens") is None:
        raise ItemError("missing_field", "`response.usage.input_tokens` is required")
    return unit_fields(read_units(usage, MESSAGES, "response.usage"))


def service_tier(usage: dict[str, Any]) -> str | None:
    if usage.get("speed") == "fast":
        return "fast"
    tier = usage.get("service_tier")
    return tier if isinstance(tier, str) else None
