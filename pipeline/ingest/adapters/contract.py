"""Contract v1 events as they are: one object, a JSON array of them, or NDJSON.

Records stay raw bytes (no decode here): the contract decoder reads each one exactly once, which keeps the
collector's hot path at one msgspec decode per event.
"""

from __future__ import annotations

import msgspec

from pipeline.ingest.adapters.base import NDJSON, BodyError, Candidate, Mapped, ndjson_lines

_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_RAW = msgspec.json.Decoder(msgspec.Raw)


class ContractAdapter:
    """A record is one event: array element, NDJSON line, or the single object."""

    name = "events"

    def map(self, body: bytes, content_type: str) -> Mapped:
        records = ndjson_lines(body) if content_type == NDJSON else self._json_records(body)
        if not records:
            raise BodyError("empty_batch", "the body holds no event")
        return Mapped(candidates=[Candidate(index, record) for index, record in enumerate(records)])

    def _json_records(self, body: bytes) -> list[bytes]:
        try:
            if body.lstrip()[:1] == b"[":
                return [bytes(item) for item in _RAW_ITEMS.decode(body)]
            _RAW.decode(body)  # a single value: only its syntax is checked here
        except msgspec.DecodeError as error:
            raise BodyError("invalid_json", str(error)) from None
        return [body]
