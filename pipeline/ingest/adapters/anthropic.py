"""Anthropic Messages responses wrapped in the same envelope as OpenAI's (see adapters/openai.py).

Anthropic's ``usage.input_tokens`` EXCLUDES the cache: the three input buckets are disjoint. The contract's
``input_tokens`` holds all input, so it is their sum; the cache buckets are copied as its parts. Extended
thinking is billed inside ``output_tokens`` and not reported apart, so ``reasoning_tokens`` stays 0.
A Message has no creation time: the envelope's ``timestamp`` is required.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import ItemError, Mapped, derived_request_id, first, map_each, parse_records, \
    response_with_usage, usage_digest, without_none
from pipeline.ingest.adapters.openai import ENVELOPE_FIELDS


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
        model=response.get("model"),
        timestamp=envelope.get("timestamp"),
        provider=first(envelope.get("provider"), "anthropic"),
        **usage_tokens(usage),
    )
    return without_none(event)


def usage_tokens(usage: dict[str, Any]) -> dict[str, Any]:
    uncached = usage.get("input_tokens")
    cache_read = first(usage.get("cache_read_input_tokens"), 0)
    cache_write = first(usage.get("cache_creation_input_tokens"), 0)
    if uncached is None:
        raise ItemError("missing_field", "`response.usage.input_tokens` is required")
    # Checked before summing: a negative or fractional part must not hide inside a plausible total.
    if not all(type(n) is int and n >= 0 for n in (uncached, cache_read, cache_write)):
        raise ItemError("invalid_field", "`input_tokens`, `cache_read_input_tokens` and "
                                         "`cache_creation_input_tokens` must be non-negative integers")
    return {
        "input_tokens": uncached + cache_read + cache_write,
        "output_tokens": usage.get("output_tokens"),
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
    }
