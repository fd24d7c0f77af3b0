"""LiteLLM's StandardLoggingPayload (what its generic API / webhook loggers send), one per record.

LiteLLM normalises every provider to OpenAI's token semantics: ``prompt_tokens`` includes cached tokens
(its Anthropic transformation adds ``cache_read_input_tokens`` and ``cache_creation_input_tokens``), and
``completion_tokens`` includes reasoning. The parts come from the OpenAI-style usage object it logs in
``metadata.usage_object`` (or ``hidden_params.usage_object``), with LiteLLM's own extensions
(litellm/types/utils.py: ``PromptTokensDetailsWrapper``, ``CompletionTokensDetailsWrapper``): audio, image and
video tokens both ways, cache writes split by lifetime (``cache_creation_token_details``), web search requests
(``server_tool_use`` or ``prompt_tokens_details``). ``response_cost`` is kept as an exact decimal string: the
body's numbers are parsed as Decimal, never as float.

Bodies: one payload, a JSON array of them (``log_format: json_array``, the default), or NDJSON (``ndjson``,
which LiteLLM sends labelled ``application/json``: recognised, see ``base.parse_records``).
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import Mapped, cost_text, dig, first, map_each, parse_records, \
    read_units, seconds_to_ms, unit_fields, without_none

# Parts that have one place in LiteLLM's usage object (paths under usage_object).
PARTS = (
    (("prompt_tokens_details", "audio_tokens"), "input_audio_tokens"),
    (("prompt_tokens_details", "image_tokens"), "input_image_tokens"),
    (("prompt_tokens_details", "video_tokens"), "input_video_tokens"),
    (("prompt_tokens_details", "character_count"), "input_characters"),
    (("prompt_tokens_details", "cache_creation_token_details", "ephemeral_5m_input_tokens"), "cache_write_5m_tokens"),
    (("prompt_tokens_details", "cache_creation_token_details", "ephemeral_1h_input_tokens"), "cache_write_1h_tokens"),
    (("completion_tokens_details", "reasoning_tokens"), "output_reasoning_tokens"),
    (("completion_tokens_details", "audio_tokens"), "output_audio_tokens"),
    (("completion_tokens_details", "image_tokens"), "output_image_tokens"),
    (("completion_tokens_details", "video_tokens"), "output_video_tokens"),
)
# Parts LiteLLM may report in either of two places (the same count twice, never two counts to add).
EITHER = (
    ((("prompt_tokens_details", "cached_tokens"), ("cache_read_input_tokens",)), "cache_read_tokens"),
    ((("cache_creation_input_tokens",), ("prompt_tokens_details", "cache_creation_tokens")), "cache_write_tokens"),
    ((("server_tool_use", "web_search_requests"), ("prompt_tokens_details", "web_search_requests")), "web_searches"),
)


class LiteLLMAdapter:
    name = "litellm"

    def map(self, body: bytes, content_type: str) -> Mapped:
        return map_each(parse_records(body, content_type), map_payload)


def map_payload(payload: dict[str, Any]) -> dict[str, Any]:
    metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    usage = first(metadata.get("usage_object"), dig(payload, "hidden_params", "usage_object"), {})
    event = {
        "request_id": payload.get("id"),
        # LiteLLM's user_api_key_hash is the SHA-256 of the virtual key: the same id hash_api_key() gives.
        "api_key_id": metadata.get("user_api_key_hash"),
        "model": payload.get("model"),
        "provider": payload.get("custom_llm_provider"),
        "timestamp": seconds_to_ms(payload.get("endTime"), "endTime"),
        "input_tokens": payload.get("prompt_tokens"),
        "output_tokens": payload.get("completion_tokens"),
        **usage_parts(usage if isinstance(usage, dict) else {}),
        "org_id": metadata.get("user_api_key_org_id"),
        "project_id": metadata.get("user_api_key_team_id"),
        "status": "error" if payload.get("status") == "failure" else "ok",
        "latency_ms": _latency_ms(payload),
        "gateway_cost_usd": cost_text(payload.get("response_cost"), "response_cost"),
    }
    return without_none(event)


def usage_parts(usage: dict[str, Any]) -> dict[str, Any]:
    """Contract fields of the parts (cache, reasoning, ``usage`` units) in a LiteLLM usage object."""
    units = read_units(usage, PARTS, "usage_object")
    for paths, unit in EITHER:
        for path in paths:
            found = read_units(usage, ((path, unit),), "usage_object")
            if found:
                units.update(found)
                break
    return unit_fields(units)


def _latency_ms(payload: dict[str, Any]) -> int | None:
    start = seconds_to_ms(payload.get("startTime"), "startTime")
    end = seconds_to_ms(payload.get("endTime"), "endTime")
    if start is None or end is None or end < start:
        return None
    return end - start
