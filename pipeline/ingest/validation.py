"""Judging candidates with the contract decoder and encoding the events that pass, for Kafka.

What is produced is rebuilt from the decoded :class:`UsageEvent`: known fields only, the timestamp in epoch
milliseconds, and ``api_key_id`` in place of any raw secret (the decoder hashes ``api_key``). Unknown
fields of the request, whatever they hold, never reach Kafka.

Events outside the worker's time bounds are rejected here too, with the worker's reasons
(``future_timestamp``, ``too_late``) and the worker's settings, by the same rule
(:func:`pipeline.contract.time_bounds_problem`): what the collector accepts, the worker counts (see
docs/ingest.md for what can still differ). Judging is total: whatever one candidate makes the encoder or the
decoder raise rejects that candidate alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from pipeline.clock import now_ms as wall_clock_ms
from pipeline.config import RollupSettings
from pipeline.contract import ContractDecoder, UsageEvent, time_bounds_problem
from pipeline.ingest.adapters.base import Candidate, Mapped, Problem, reason_for


@dataclass(frozen=True)
class TimeWindow:
    """The event-time window the worker counts: ``[now - max_lateness_ms, now + max_future_skew_ms]``.

    ``clock_ms`` gives "now" in epoch ms (tests pass a fixed one). Build it with :meth:`of` from the worker's
    :class:`RollupSettings` (``METERLINE_MAX_LATENESS``, ``METERLINE_MAX_FUTURE_SKEW``).
    """

    max_lateness_ms: int
    max_future_skew_ms: int
    clock_ms: Callable[[], int] = wall_clock_ms

    @classmethod
    def of(cls, rollup: RollupSettings, clock_ms: Callable[[], int] = wall_clock_ms) -> TimeWindow:
        return cls(int(rollup.max_lateness_s * 1000), int(rollup.max_future_skew_s * 1000), clock_ms)


@dataclass
class Verdict:
    accepted: list[tuple[str, bytes]] = field(default_factory=list)  # (api_key_id, encoded event)
    rejected: list[Problem] = field(default_factory=list)  # ordered by record index


class EventValidator:
    """Candidates -> :class:`Verdict`: the contract's rules, then the worker's time window."""

    def __init__(self, decoder: ContractDecoder, window: TimeWindow) -> None:
        self._decoder = decoder
        self._window = window
        self._encode = msgspec.json.Encoder().encode

    def judge(self, mapped: Mapped) -> Verdict:
        verdict = Verdict(rejected=list(mapped.problems))
        now_ms = self._window.clock_ms()  # one "now" per request
        for candidate in mapped.candidates:
            try:
                outcome = self._judge_one(candidate, now_ms)
            except Exception as error:  # noqa: BLE001 - whatever one candidate raises is its own fault
                outcome = Problem(candidate.index, *reason_for(error, otherwise="mapping_failed"))
            if isinstance(outcome, Problem):
                verdict.rejected.append(outcome)
            else:
                verdict.accepted.append(outcome)
        verdict.rejected.sort(key=lambda problem: problem.index)
        return verdict

    def _judge_one(self, candidate: Candidate, now_ms: int) -> tuple[str, bytes] | Problem:
        raw = candidate.value if isinstance(candidate.value, bytes) else self._encode(candidate.value)
        if raw.lstrip()[:1] != b"{":  # an array here would be read as a batch; a record is one event
            return Problem(candidate.index, "not_an_object", "an event must be a JSON object")
        events, rejections = self._decoder.decode(raw)
        if not events:
            return Problem(candidate.index, rejections[0].reason, rejections[0].detail)
        event, window = events[0], self._window
        problem = time_bounds_problem(event.timestamp, now_ms, window.max_lateness_ms, window.max_future_skew_ms)
        if problem is not None:
            return Problem(candidate.index, *problem)
        return self._outgoing(event)

    def _outgoing(self, event: UsageEvent) -> tuple[str, bytes]:
        return event.api_key_id, self._encode(event)
