"""OpenAI responses (Chat Completions, Responses, Realtime, Images and audio transcription usage) wrapped in
meterline's small envelope.

A record is one envelope::

    {"api_key_id": "key_1",                  # or "api_key": a raw secret, hashed before anything is stored
     "request_id": "gw-123",                 # optional: default <response.id>@<created>@<usage digest>
     "timestamp": "2026-11-25T10:15:00Z",    # optional: default response.created / created_at (epoch s)
     "provider": "openai", "org_id": "...", "project_id": "...", "status": "ok", "latency_ms": 812,
     "gateway_cost_usd": "0.0012", "service_tier": "flex",   # all optional
     "model": "gpt-realtime",                # optional: default response.model (Realtime and audio
                                             # transcription responses name no model)
     "response": {"id": "chatcmpl-..", "model": "gpt-4o", "created": 1764065700, "usage": {...}}}

Token semantics are OpenAI's: prompt/input tokens include cached, audio and image ones, completion/output
tokens include reasoning and audio ones, which is what the contract wants; the details are copied as the
parts, under genai-prices' unit names (the same mapping as genai-prices' own OpenAI extractors). The
response's ``service_tier`` (``default``, ``flex``, ``priority``) selects tier prices unless the envelope
names one. Input ``text_tokens`` are read only where OpenAI also splits the cached tokens by modality
(Realtime, transcription) or caches nothing (Images): elsewhere whether they include cached tokens is not
documented, and text is what an unsplit input token is anyway.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import Mapped, derived_request_id, first, map_each, parse_records, read_units, \
    response_with_usage, seconds_to_ms, unit_fields, usage_digest, without_none

# Envelope fields copied as they are (the contract validates them).
ENVELOPE_FIELDS = ("api_key_id", "api_key", "provider", "org_id", "project_id", "status", "latency_ms",
                   "gateway_cost_usd", "service_tier")

# (path in `usage`, genai-prices unit) per API; several paths to one unit add up.
CHAT = (
    (("prompt_tokens",), "input_tokens"),
    (("completion_tokens",), "output_tokens"),
    (("prompt_tokens_details", "cached_tokens"), "cache_read_tokens"),
    (("prompt_tokens_details", "cache_write_tokens"), "cache_write_tokens"),
    (("prompt_tokens_details", "audio_tokens"), "input_audio_tokens"),
    (("prompt_tokens_details", "image_tokens"), "input_image_tokens"),
    (("completion_tokens_details", "reasoning_tokens"), "output_reasoning_tokens"),
    (("completion_tokens_details", "audio_tokens"), "output_audio_tokens"),
    (("completion_tokens_details", "image_tokens"), "output_image_tokens"),
)
RESPONSES = (
    (("input_tokens",), "input_tokens"),
    (("output_tokens",), "output_tokens"),
    (("input_tokens_details", "cached_tokens"), "cache_read_tokens"),
    (("input_tokens_details", "cache_write_tokens"), "cache_write_tokens"),
    (("input_tokens_details", "audio_tokens"), "input_audio_tokens"),
    (("input_tokens_details", "image_tokens"), "input_image_tokens"),
    (("output_tokens_details", "reasoning_tokens"), "output_reasoning_tokens"),
    (("output_tokens_details", "text_tokens"), "output_text_tokens"),
    (("output_tokens_details", "image_tokens"), "output_image_tokens"),
)
IMAGES = (*RESPONSES, (("input_tokens_details", "text_tokens"), "input_text_tokens"))
# Realtime responses and token-billed transcriptions: input_token_details (singular "token").
REALTIME = (
    (("input_tokens",), "input_tokens"),
    (("output_tokens",), "output_tokens"),
    (("input_token_details", "text_tokens"), "input_text_tokens"),
    (("input_token_details", "audio_tokens"), "input_audio_tokens"),
    (("input_token_details", "image_tokens"), "input_image_tokens"),
    (("input_token_details", "cached_tokens"), "cache_read_tokens"),
    (("input_token_details", "cached_tokens_details", "text_tokens"), "cache_text_read_tokens"),
    (("input_token_details", "cached_tokens_details", "audio_tokens"), "cache_audio_read_tokens"),
    (("input_token_details", "cached_tokens_details", "image_tokens"), "cache_image_read_tokens"),
    (("output_token_details", "text_tokens"), "output_text_tokens"),
    (("output_token_details", "audio_tokens"), "output_audio_tokens"),
)
DURATION = ((("seconds",), "audio_seconds"),)  # transcription billed per second: {"type": "duration"}


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
        model=first(envelope.get("model"), response.get("model")),
        timestamp=timestamp,
        provider=first(envelope.get("provider"), "openai"),
        service_tier=first(envelope.get("service_tier"), response.get("service_tier")),
        **usage_tokens(usage),
    )
    return without_none(event)


def usage_tokens(usage: dict[str, Any]) -> dict[str, Any]:
    """Contract token fields (and ``usage`` units) of any OpenAI ``usage`` object. A transcription billed per
    second has no tokens: 0 input and output tokens."""
    mappings = mappings_for(usage)
    fields = unit_fields(read_units(usage, mappings, "response.usage"))
    return {"input_tokens": 0, "output_tokens": 0, **fields} if mappings is DURATION else fields


def mappings_for(usage: dict[str, Any]) -> tuple:
    """Which API's usage object this is, by its documented shape."""
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return CHAT
    if usage.get("type") == "duration":
        return DURATION
    if "input_token_details" in usage or "output_token_details" in usage:
        return REALTIME
    details = usage.get("input_tokens_details")
    if isinstance(details, dict) and "image_tokens" in details and "cached_tokens" not in details:
        return IMAGES
    return RESPONSES
