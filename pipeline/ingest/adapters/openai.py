"""OpenAI responses (Chat Completions and Responses API) wrapped in meterline's small envelope.

A record is one envelope::

    {"api_key_id": "key_1",                  # or "api_key": a raw secret, hashed before anything is stored
     "request_id": "gw-123",                 # optional: default <response.id>@<created>@<usage digest>
     "timestamp": "2026-11-25T10:15:00Z",    # optional: default response.created / created_at (epoch s)
     "provider": "openai", "org_id": "...", "project_id": "...", "status": "ok", "latency_ms": 812,
     "gateway_cost_usd": "0.0012",           # all optional
     "response": {"id": "chatcmpl-..", "model": "gpt-4o", "created": 1764065700, "usage": {...}}}

Token semantics are OpenAI's: prompt/input tokens include cached ones, completion/output tokens include
reasoning ones, which is what the contract wants; the details are copied as the parts.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import Mapped, derived_request_id, dig, first, map_each, parse_records, \
    response_with_usage, seconds_to_ms, usage_digest, without_none

# Envelope fields copied as they are (the contract validates them).
ENVELOPE_FIELDS = ("api_key_id", "api_key", "provider", "org_id", "project_id", "status", "latency_ms",
                   "gateway_cost_usd")


class OpenAIAdapter:
    name = "openai"

    def map(self, body: bytes, content_type: str) -> Mapped:
        return map_each(parse_records(body, content_type), map_envelope)


def map_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    response, usage = response_with_usage(envelope, "the OpenAI response object")
    timestamp = envelope.get("timestamp")
    if timestamp is None:
        timestamp = seconds_to_ms(first(response.get("created"), response.get("created_at")), "response.created")
    event = {name: envelope.get(name) for name in ENVELOPE_FIELDS}
    event.update(
        request_id=first(envelope.get("request_id"), derived_request_id(
            response.get("id"), first(response.get("created"), response.get("created_at"), envelope.get("timestamp")),
            usage_digest(usage))),
        model=response.get("model"),
        timestamp=timestamp,
        provider=first(envelope.get("provider"), "openai"),
        **usage_tokens(usage),
    )
    return without_none(event)


def usage_tokens(usage: dict[str, Any]) -> dict[str, Any]:
    """Contract token fields of a Chat Completions or a Responses API ``usage`` object."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:  # Chat Completions
        return {
            "input_tokens": usage.get("prompt_tokens"),
            "output_tokens": usage.get("completion_tokens"),
            "cache_read_tokens": dig(usage, "prompt_tokens_details", "cached_tokens"),
            "reasoning_tokens": dig(usage, "completion_tokens_details", "reasoning_tokens"),
        }
    return {  # Responses API
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cache_read_tokens": dig(usage, "input_tokens_details", "cached_tokens"),
        "reasoning_tokens": dig(usage, "output_tokens_details", "reasoning_tokens"),
    }
