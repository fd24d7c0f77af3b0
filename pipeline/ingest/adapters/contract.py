"""Contract v1 events as they are: one object, a JSON array of them, or NDJSON.

Records stay raw bytes (no decode here): the contract decoder reads each one exactly once, which keeps the
collector's hot path at one msgspec decode per event. Splitting an array into raw items checks JSON syntax
and nesting but not the UTF-8 inside strings; an item with bad bytes is rejected alone by the validator.
"""

from __future__ import annotations

import msgspec

from pipeline.ingest.adapters.base import NDJSON, BodyError, Candidate, Mapped, ndjson_lines, reason_for, \
    refuse_empty

_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_RAW = msgspec.json.Decoder(msgspec.Raw)


class ContractAdapter:
    """A record is one event: array element, NDJSON line, or the single object."""

    name = "events"

    def map(self, body: bytes, content_type: str) -> Mapped:
        refuse_empty(body)
        records = ndjson_lines(body) if content_type == NDJSON else self._json_records(body)
        if not records:
            raise BodyError("empty_batch", "the body holds no event")
        return Mapped(candidates=[Candidate(index, record) for index, record in enumerate(records)])

    def _json_records(self, body: bytes) -> list[bytes]:
        try:
            if body.lstrip()[:1] == b"[":
                return [bytes(item) for item in _RAW_ITEMS.decode(body)]
            _RAW.decode(body)  # a single value: only its syntax is checked here
        except Exception as error:  # noqa: BLE001 - too deep, not JSON, ...: the body's fault
            raise BodyError(*reason_for(error)) from None
        return [body]
