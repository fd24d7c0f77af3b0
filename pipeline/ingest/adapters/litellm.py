"""LiteLLM's StandardLoggingPayload (what its generic API / webhook loggers send), one per record.

LiteLLM normalises every provider to OpenAI's token semantics: ``prompt_tokens`` includes cached tokens
(its Anthropic transformation adds ``cache_read_input_tokens`` and ``cache_creation_input_tokens``), and
``completion_tokens`` includes reasoning. The parts come from the OpenAI-style usage object it logs in
``metadata.usage_object`` (or ``hidden_params.usage_object``). ``response_cost`` is kept as an exact
decimal string: the body's numbers are parsed as Decimal, never as float.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import Mapped, cost_text, dig, first, map_each, parse_records, \
    seconds_to_ms, without_none


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
        "cache_read_tokens": first(dig(usage, "prompt_tokens_details", "cached_tokens"),
                                   dig(usage, "cache_read_input_tokens")),
        "cache_write_tokens": first(dig(usage, "cache_creation_input_tokens"),
                                    dig(usage, "prompt_tokens_details", "cache_creation_tokens")),
        "reasoning_tokens": dig(usage, "completion_tokens_details", "reasoning_tokens"),
        "org_id": metadata.get("user_api_key_org_id"),
        "project_id": metadata.get("user_api_key_team_id"),
        "status": "error" if payload.get("status") == "failure" else "ok",
        "latency_ms": _latency_ms(payload),
        "gateway_cost_usd": cost_text(payload.get("response_cost"), "response_cost"),
    }
    return without_none(event)


def _latency_ms(payload: dict[str, Any]) -> int | None:
    start = seconds_to_ms(payload.get("startTime"), "startTime")
    end = seconds_to_ms(payload.get("endTime"), "endTime")
    if start is None or end is None or end < start:
        return None
    return end - start
