"""CloudEvents 1.0 in structured mode: ``application/cloudevents+json`` (one event) and
``application/cloudevents-batch+json`` (a JSON array of events).

A record is one CloudEvent. Its ``data`` is read by the adapter its ``type`` names (see TYPES); when the
type is not one of them, a known ``dataschema`` decides. The CloudEvent's ``id`` and ``time`` fill the
event's ``request_id`` and ``timestamp`` when ``data`` has none. ``data_base64`` is not accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.ingest.adapters import anthropic, gemini, litellm, openai
from pipeline.ingest.adapters.base import BodyError, ItemError, Mapped, derived_request_id, first, map_each, \
    parse_document, without_none

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
CONTRACT_SCHEMA = "https://meterline.dev/schemas/usage-event.v1.schema.json"


def _contract_event(data: dict[str, Any]) -> dict[str, Any]:
    return data  # validated as it is by the contract decoder, like any event


TYPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "dev.meterline.usage.v1": _contract_event,
    "dev.meterline.openai.v1": openai.map_envelope,
    "dev.meterline.anthropic.v1": anthropic.map_envelope,
    "dev.meterline.gemini.v1": gemini.map_envelope,
    "dev.meterline.litellm.v1": litellm.map_payload,
}
SCHEMAS = {CONTRACT_SCHEMA: _contract_event}


class CloudEventsAdapter:
    name = "cloudevents"

    def map(self, body: bytes, content_type: str) -> Mapped:
        document = parse_document(body)
        if content_type == BATCH and not isinstance(document, list):
            raise BodyError("not_an_object", "a CloudEvents batch must be a JSON array of events")
        if content_type != BATCH and not isinstance(document, dict):
            raise BodyError("not_an_object", "a structured CloudEvent must be a JSON object")
        return map_each(document if content_type == BATCH else [document], map_cloudevent)


def map_cloudevent(cloudevent: dict[str, Any]) -> dict[str, Any]:
    if cloudevent.get("specversion") != "1.0":
        raise ItemError("invalid_field", "`specversion` must be \"1.0\"")
    data = cloudevent.get("data")
    if not isinstance(data, dict):
        raise ItemError("missing_field", "`data` must hold a JSON object (data_base64 is not accepted)")
    event = dict(_mapper(cloudevent)(data))
    # CloudEvents 1.0: "Producers MUST ensure that source + id is unique for each distinct event": that pair
    # identifies the request unless the data names the gateway's own request_id.
    event["request_id"] = first(data.get("request_id"),
                                derived_request_id(cloudevent.get("id"), cloudevent.get("source")),
                                event.get("request_id"))
    event.setdefault("timestamp", cloudevent.get("time"))
    return without_none(event)


def _mapper(cloudevent: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    kind, schema = cloudevent.get("type"), cloudevent.get("dataschema")
    mapper = (TYPES.get(kind) if isinstance(kind, str) else None) or \
        (SCHEMAS.get(schema) if isinstance(schema, str) else None)
    if mapper is None:
        raise ItemError("invalid_field", f"unknown CloudEvents `type`; known: {', '.join(sorted(TYPES))}")
    return mapper
