"""Judging candidates with the contract decoder and encoding the events that pass, for Kafka.

What is produced is rebuilt from the decoded :class:`UsageEvent`: known fields only, the timestamp in epoch
milliseconds, and ``api_key_id`` in place of any raw secret (the decoder hashes ``api_key``). Unknown
fields of the request, whatever they hold, never reach Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from pipeline.contract import ContractDecoder, UsageEvent
from pipeline.ingest.adapters.base import Mapped, Problem


@dataclass
class Verdict:
    accepted: list[tuple[str, bytes]] = field(default_factory=list)  # (api_key_id, encoded event)
    rejected: list[Problem] = field(default_factory=list)  # ordered by record index


class EventValidator:
    def __init__(self, decoder: ContractDecoder) -> None:
        self._decoder = decoder
        self._encode = msgspec.json.Encoder().encode

    def judge(self, mapped: Mapped) -> Verdict:
        verdict = Verdict(rejected=list(mapped.problems))
        for candidate in mapped.candidates:
            raw = candidate.value if isinstance(candidate.value, bytes) else self._encode(candidate.value)
            if raw.lstrip()[:1] != b"{":  # an array here would be read as a batch; a record is one event
                verdict.rejected.append(Problem(candidate.index, "not_an_object", "an event must be a JSON object"))
                continue
            events, rejections = self._decoder.decode(raw)
            if events:
                verdict.accepted.append(self._outgoing(events[0]))
            else:
                verdict.rejected.append(Problem(candidate.index, rejections[0].reason, rejections[0].detail))
        verdict.rejected.sort(key=lambda problem: problem.index)
        return verdict

    def _outgoing(self, event: UsageEvent) -> tuple[str, bytes]:
        return event.api_key_id, self._encode(event)
