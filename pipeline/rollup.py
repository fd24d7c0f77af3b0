"""Turning one partition's consumed messages into hourly rollup deltas (pure logic, no I/O).

A flush of one partition goes through two steps so that the ClickHouse lookup in between stays outside:

1. :meth:`RollupBuilder.screen` decodes and validates every message, applies the lateness and clock-skew
   bounds, drops repeats inside the flush, and asks the in-memory filter which request ids *may* have been
   counted before (plus every id older than the dedup horizon, which the filter no longer holds).
2. The caller confirms those against ClickHouse, then :meth:`Screened.aggregate` sums the rest per
   (key, org, project, model, provider, hour, price) into a :class:`Rollup`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Protocol

import msgspec
import numpy as np

from pipeline.contract import ContractDecoder, Rejection, UsageEvent, redact
from pipeline.dedup import SeenRequests, request_id_hashes

HOUR_MS = 3_600_000

COUNTED, DUPLICATE, REJECTED = "counted", "duplicate", "rejected"

# Positions in a group's counter list; a list is several times cheaper than an object per update.
(REQUESTS, ERRORS, UNPRICED, INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, REASONING, GATEWAY_COST_REQUESTS) = range(9)
COUNTER_NAMES = ("requests", "error_requests", "unpriced_requests", "input_tokens", "output_tokens",
                 "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "gateway_cost_requests")


class RateLike(Protocol):
    version: str

    def cost(self, requests: int, input_tokens: int, cache_read_tokens: int, cache_write_tokens: int,
             output_tokens: int, reasoning_tokens: int) -> tuple[Decimal, Decimal]: ...


class PriceLookup(Protocol):
    def rate_for(self, model: str, provider: str | None, ts_ms: int, input_tokens: int) -> RateLike | None: ...


@dataclass(frozen=True)
class TimeBounds:
    """Event-time limits relative to the worker's clock at the flush."""

    now_ms: int
    max_lateness_ms: int
    max_future_skew_ms: int
    dedup_horizon_ms: int

    @property
    def oldest_ms(self) -> int:
        return self.now_ms - self.max_lateness_ms

    @property
    def newest_ms(self) -> int:
        return self.now_ms + self.max_future_skew_ms

    @property
    def horizon_ms(self) -> int:
        return self.now_ms - self.dedup_horizon_ms


@dataclass(frozen=True, slots=True)
class RawMessage:
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    offset: int
    rejection: Rejection


GroupKey = tuple  # (api_key_id, org_id, project_id, model, provider, hour_start_s, price_version)


@dataclass
class Rollup:
    """Everything one flush of one partition writes."""

    groups: dict[GroupKey, list] = field(default_factory=dict)
    gateway_cost: dict[GroupKey, Decimal] = field(default_factory=dict)
    rates: dict[str, RateLike] = field(default_factory=dict)
    outcomes: Counter = field(default_factory=Counter)  # (outcome, reason) -> events
    new_request_ids: list[str] = field(default_factory=list)
    new_request_hours: list[int] = field(default_factory=list)  # hours since the epoch, aligned with ids
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def counted(self) -> int:
        return self.outcomes[(COUNTED, "")]


@dataclass
class Screened:
    """Candidates of one flush, waiting for ClickHouse to confirm which "maybe seen" ids really were."""

    candidates: list[UsageEvent]
    maybe_seen: list[str]
    outcomes: Counter
    dead_letters: list[DeadLetter]

    def aggregate(self, confirmed_seen: set[str], prices: PriceLookup) -> Rollup:
        rollup = Rollup(outcomes=self.outcomes, dead_letters=self.dead_letters)
        groups, rates, gateway = rollup.groups, rollup.rates, rollup.gateway_cost
        new_ids, new_hours = rollup.new_request_ids, rollup.new_request_hours
        rate_for = prices.rate_for
        duplicates = 0
        for event in self.candidates:
            request_id = event.request_id
            if request_id in confirmed_seen:
                duplicates += 1
                continue
            ts = event.timestamp
            hour = ts // HOUR_MS
            rate = rate_for(event.model, event.provider or None, ts, event.input_tokens)
            version = "" if rate is None else rate.version
            key = (event.api_key_id, event.org_id, event.project_id, event.model, event.provider, hour * 3600, version)
            counters = groups.get(key)
            if counters is None:
                counters = groups[key] = [0] * 9
                if rate is not None:
                    rates[version] = rate
            _add(counters, event, rate is None)
            if event.gateway_cost_usd is not None:
                counters[GATEWAY_COST_REQUESTS] += 1
                gateway[key] = gateway.get(key, Decimal(0)) + Decimal(event.gateway_cost_usd)
            new_ids.append(request_id)
            new_hours.append(hour)
        rollup.outcomes[(DUPLICATE, "")] += duplicates
        rollup.outcomes[(COUNTED, "")] += len(new_ids)
        return rollup


def _add(counters: list, event: UsageEvent, unpriced: bool) -> None:
    counters[REQUESTS] += 1
    if event.status == "error":
        counters[ERRORS] += 1
    if unpriced:
        counters[UNPRICED] += 1
    counters[INPUT] += event.input_tokens
    counters[OUTPUT] += event.output_tokens
    counters[CACHE_READ] += event.cache_read_tokens
    counters[CACHE_WRITE] += event.cache_write_tokens
    counters[REASONING] += event.reasoning_tokens


class RollupBuilder:
    """Screens the messages of one partition against the contract, the time bounds and what was counted."""

    def __init__(self, decoder: ContractDecoder) -> None:
        self._decoder = decoder

    def screen(self, messages: Iterable[RawMessage], bounds: TimeBounds, seen: SeenRequests) -> Screened:
        outcomes: Counter = Counter()
        dead_letters: list[DeadLetter] = []
        candidates: dict[str, UsageEvent] = {}
        duplicates = 0
        oldest, newest = bounds.oldest_ms, bounds.newest_ms
        for message in messages:
            events, rejections = self._decoder.decode(message.value, message.key)
            for rejection in rejections:
                dead_letters.append(DeadLetter(message.offset, rejection))
            for position, event in enumerate(events):
                ts = event.timestamp
                if ts < oldest or ts > newest:
                    rejection = _out_of_bounds(event, bounds, *_locate(message.value, position, rejections))
                    dead_letters.append(DeadLetter(message.offset, rejection))
                elif event.request_id in candidates:
                    duplicates += 1
                else:
                    candidates[event.request_id] = event
        for letter in dead_letters:
            outcomes[(REJECTED, letter.rejection.reason)] += 1
        outcomes[(DUPLICATE, "")] += duplicates
        return Screened(list(candidates.values()), _maybe_seen(candidates, seen, bounds), outcomes, dead_letters)


def _maybe_seen(candidates: dict[str, UsageEvent], seen: SeenRequests, bounds: TimeBounds) -> list[str]:
    ids = list(candidates)
    if not ids:
        return []
    hits = seen.maybe_seen(request_id_hashes(ids))
    horizon = bounds.horizon_ms
    before_horizon = np.fromiter((e.timestamp < horizon for e in candidates.values()), dtype=bool, count=len(ids))
    return [ids[i] for i in np.flatnonzero(hits | before_horizon)]


_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def _locate(value: bytes, position: int, rejections: list[Rejection]) -> tuple[bytes, int | None]:
    """Original bytes and batch index of the ``position``-th valid event of a message (rare path: only for
    events outside the time bounds)."""
    if value.lstrip()[:1] != b"[":
        return redact(value), None
    rejected = {r.index for r in rejections}
    items = _RAW_ITEMS.decode(value)
    index = [i for i in range(len(items)) if i not in rejected][position]
    return redact(bytes(items[index])), index


def _out_of_bounds(event: UsageEvent, bounds: TimeBounds, raw: bytes, index: int | None) -> Rejection:
    if event.timestamp > bounds.newest_ms:
        detail = (f"timestamp is {(event.timestamp - bounds.now_ms) / 1000:.0f} s in the future; "
                  f"at most {bounds.max_future_skew_ms / 1000:.0f} s of clock skew is accepted")
        return Rejection("future_timestamp", detail, raw, index)
    detail = (f"timestamp is {(bounds.now_ms - event.timestamp) / 3_600_000:.1f} h old; events older than "
              f"{bounds.max_lateness_ms / 3_600_000:.0f} h are not added to their hour any more")
    if event.timestamp < 10**11:
        detail += " (it looks like epoch seconds: the contract wants epoch milliseconds)"
    return Rejection("too_late", detail, raw, index)
