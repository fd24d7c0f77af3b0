"""Which adapter reads which request: by path, and on /v1/events also by content type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.ingest.adapters.anthropic import AnthropicAdapter
from pipeline.ingest.adapters.base import NDJSON, Mapped
from pipeline.ingest.adapters.cloudevents import BATCH, STRUCTURED, CloudEventsAdapter
from pipeline.ingest.adapters.contract import ContractAdapter
from pipeline.ingest.adapters.gemini import GeminiAdapter
from pipeline.ingest.adapters.litellm import LiteLLMAdapter
from pipeline.ingest.adapters.openai import OpenAIAdapter
from pipeline.ingest.adapters.otlp import OtlpTracesAdapter

JSON = "application/json"
# Bodies most adapters read: one JSON object, a JSON array of them, or NDJSON. No Content-Type means JSON.
JSON_TYPES = frozenset({JSON, NDJSON})
CLOUDEVENT_TYPES = frozenset({STRUCTURED, BATCH})


class Adapter(Protocol):
    name: str

    def map(self, body: bytes, content_type: str) -> Mapped: ...


@dataclass(frozen=True)
class Route:
    path: str
    adapters: dict[str, Adapter]  # content type -> adapter
    otlp: bool = False  # answers in OTLP's ExportTraceServiceResponse shape

    @property
    def name(self) -> str:
        """The metric label: the adapter family of the path."""
        return self.path.removeprefix("/v1/").split("/")[0]

    def adapter_for(self, content_type: str) -> Adapter | None:
        return self.adapters.get(content_type or JSON)


def _json(adapter: Adapter) -> dict[str, Adapter]:
    return dict.fromkeys(JSON_TYPES, adapter)


def build_routes() -> tuple[Route, ...]:
    cloudevents = dict.fromkeys(CLOUDEVENT_TYPES, CloudEventsAdapter())
    return (
        Route("/v1/events", {**_json(ContractAdapter()), **cloudevents}),
        Route("/v1/cloudevents", cloudevents),
        Route("/v1/openai", _json(OpenAIAdapter())),
        Route("/v1/anthropic", _json(AnthropicAdapter())),
        Route("/v1/gemini", _json(GeminiAdapter())),
        Route("/v1/litellm", _json(LiteLLMAdapter())),
        Route("/v1/otlp/v1/traces", {JSON: OtlpTracesAdapter()}, otlp=True),
    )
