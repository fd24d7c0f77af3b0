"""Google Gemini ``GenerateContentResponse`` objects (Gemini API and Vertex AI) in meterline's envelope.

A record is one envelope, as for OpenAI (see adapters/openai.py)::

    {"api_key_id": "key_1", "request_id": "gw-9", "timestamp": "2026-11-25T10:17:00Z",   # ids and time optional
     "model": "gemini-2.5-pro", "provider": "google", "org_id": "...", ...,              # optional
     "response": {"candidates": [...], "usageMetadata": {...}, "modelVersion": "gemini-2.5-pro",
                  "responseId": "...", "createTime": "2026-11-25T10:16:59.123Z"}}

``request_id`` defaults to ``<responseId>@<createTime or the envelope's timestamp>@<usage digest>`` (as for
OpenAI and Anthropic: docs/ingest.md, "Request ids"), ``model`` to ``modelVersion``, ``timestamp`` to Vertex
AI's ``createTime`` (the Gemini API has none: the envelope's is then required). For a streamed response, send the
last chunk (its ``usageMetadata`` holds the totals).

``usageMetadata`` (Gemini API reference, "UsageMetadata"): ``promptTokenCount`` includes the cached content
(``cachedContentTokenCount``), so it is input with cache reads as a part; ``toolUsePromptTokenCount`` is input
too and ``thoughtsTokenCount`` is output, both reported *outside* the prompt and candidate counts, so they are
added to them (thinking tokens are billed as output tokens). The per-modality lists (``promptTokensDetails``,
``cacheTokensDetails``, ``candidatesTokensDetails``, ``toolUsePromptTokensDetails``: TEXT, AUDIO, IMAGE, VIDEO;
DOCUMENT counts as image, as Google bills PDF pages) become the modality units. This is genai-prices' own
Google extractor's mapping.
"""

from __future__ import annotations

from typing import Any

from pipeline.ingest.adapters.base import ItemError, Mapped, Modality, derived_request_id, first, map_each, \
    parse_records, read_units, unit_fields, usage_digest, without_none
from pipeline.ingest.adapters.openai import ENVELOPE_FIELDS

MODALITIES = {"TEXT": "text", "AUDIO": "audio", "IMAGE": "image", "DOCUMENT": "image", "VIDEO": "video"}
USAGE_METADATA = (
    (("promptTokenCount",), "input_tokens"),
    (("toolUsePromptTokenCount",), "input_tokens"),
    (("toolUsePromptTokenCount",), "input_tool_tokens"),
    (("cachedContentTokenCount",), "cache_read_tokens"),
    (("candidatesTokenCount",), "output_tokens"),
    (("thoughtsTokenCount",), "output_tokens"),
    (("thoughtsTokenCount",), "output_reasoning_tokens"),
    *((("promptTokensDetails", Modality(google), "tokenCount"), f"input_{ours}_tokens")
      for google, ours in MODALITIES.items()),
    *((("cacheTokensDetails", Modality(google), "tokenCount"), f"cache_{ours}_read_tokens")
      for google, ours in MODALITIES.items()),
    *((("candidatesTokensDetails", Modality(google), "tokenCount"), f"output_{ours}_tokens")
      for google, ours in MODALITIES.items()),
    *(mapping for google, ours in MODALITIES.items() for mapping in (
        (("toolUsePromptTokensDetails", Modality(google), "tokenCount"), f"input_{ours}_tokens"),
        (("toolUsePromptTokensDetails", Modality(google), "tokenCount"), f"input_{ours}_tool_tokens"))),
)


class GeminiAdapter:
    name = "gemini"

    def map(self, body: bytes, content_type: str) -> Mapped:
        return map_each(parse_records(body, content_type), map_envelope)


def map_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    response = envelope.get("response")
    if not isinstance(response, dict):
        raise ItemError("missing_field", "`response` (the GenerateContentResponse) is required")
    usage = response.get("usageMetadata")
    if not isinstance(usage, dict):
        raise ItemError("missing_field", "`response.usageMetadata` is required")
    event = {name: envelope.get(name) for name in ENVELOPE_FIELDS}
    units = read_units(usage, USAGE_METADATA, "response.usageMetadata")
    event.update(
        request_id=first(envelope.get("request_id"), derived_request_id(
            response.get("responseId"), first(response.get("createTime"), envelope.get("timestamp")),
            usage_digest(usage))),
        model=first(envelope.get("model"), response.get("modelVersion")),
        timestamp=first(envelope.get("timestamp"), response.get("createTime")),
        provider=first(envelope.get("provider"), "google"),
        **{"input_tokens": 0, "output_tokens": 0, **unit_fields(units)},
    )
    return without_none(event)
