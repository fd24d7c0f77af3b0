"""Turning one partition's consumed messages into rollup deltas per 15-minute window (pure logic, no I/O).

This is the per-event hot path, so it is one pass over the events:

1. :meth:`RollupBuilder.draft` decodes and validates every message, applies the lateness and clock-skew
   bounds, drops repeats inside the flush, finds each event's price at its own timestamp and adds it to its
   group (:class:`~pipeline.measures.Dimensions`: key, org, project, model, provider, window, price sheet).
   It also asks the in-memory filter which requests *may* have been counted by an earlier flush (plus every
   one older than the dedup horizon). A request is identified by :class:`RequestKey`, (api_key_id,
   request_id): two keys (tenants) may use the same request id.
2. The caller confirms those against ClickHouse; :meth:`Draft.finish` takes the few confirmed duplicates
   back out of their groups, prices each group (:meth:`pipeline.metering.pricing.Rate.price`) and returns the
   :class:`Rollup` to write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, NamedTuple, Protocol

import msgspec
import numpy as np

from pipeline.clock import HOUR_MS, WINDOW_MS
from pipeline.contract import ContractDecoder, Rejection, UsageEvent, redact, time_bounds_problem, unit_values
from pipeline.measures import UNPRICED, Counts, Dimensions
from pipeline.metering.dedup import SeenRequests, request_id_hashes
from pipeline.metering.pricing import Cost

COUNTED, DUPLICATE, REJECTED = "counted", "duplicate", "rejected"


class Outcome(NamedTuple):
    """What became of consumed events: ``counted``, ``duplicate`` or ``rejected`` (with its reason)."""

    outcome: str
    reason: str = ""


class RequestKey(NamedTuple):
    """A request's identity for deduplication: a request id is unique only within its api key (tenant)."""

    api_key_id: str
    request_id: str


class RateLike(Protocol):
    version: str
    apart: frozenset[str]  # units priced event by event (pricing.Rate.price_apart); usually empty

    def price(self, counts: Counts) -> Cost: ...

    def price_apart(self, values: dict[str, int]) -> dict[str, int] | None: ...


class PriceLookup(Protocol):
    def rate_for(self, model: str, provider: str | None, ts_ms: int, input_tokens: int,
                 service_tier: str = "") -> RateLike | None: ...


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
    value: bytes | None  # None: a tombstone (a record with a null value), dead-lettered as such
    timestamp_ms: int = 0  # the Kafka record's timestamp (epoch ms; 0 when unknown)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    offset: int
    rejection: Rejection


@dataclass
class Rollup:
    """Everything one flush of one partition writes: usage per group (counts, cost, gateway cost), the
    outcome of every consumed event, the request ids it counts, and the dead letters to send first."""

    groups: dict[Dimensions, Counts] = field(default_factory=dict)
    costs: dict[Dimensions, Cost] = field(default_factory=dict)  # priced groups only; set by Draft.finish
    gateway_cost: dict[Dimensions, Decimal] = field(default_factory=dict)  # USD, groups that reported one
    outcomes: Counter[Outcome] = field(default_factory=Counter)  # -> events
    # (api_key_id, request_id) of each request counted by this flush, in log order: RequestKey's fields as plain
    # tuples (the hot path builds one per event; a NamedTuple would cost a Python call each).
    new_requests: list[tuple[str, str]] = field(default_factory=list)
    new_request_hours: list[int] = field(default_factory=list)  # their event hours since the epoch
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def unpriced_requests(self) -> int:
        return sum(counts.requests for group, counts in self.groups.items() if group.price_version == UNPRICED)


@dataclass
class Draft:
    """A flush's groups before ClickHouse has confirmed which "maybe seen" request ids really were."""

    rollup: Rollup
    counted: dict[RequestKey, tuple[UsageEvent, Dimensions]]  # -> its event and group, in log order
    maybe_seen: list[RequestKey]
    rates: dict[str, RateLike]  # price version -> the rate of the groups priced with it

    def finish(self, confirmed_seen: set[RequestKey]) -> Rollup:
        """Takes the confirmed duplicates back out and prices every group."""
        rollup, counted = self.rollup, self.counted
        for request in confirmed_seen:
            event, group = counted.pop(request)
            counts = rollup.groups[group]
            counts.subtract(event)
            if event.usage is not None and (version := Dimensions._make(group).price_version) != UNPRICED:
                _price_apart(self.rates[version], event, counts, -1)
            if event.gateway_cost_usd is not None:
                rollup.gateway_cost[group] -= Decimal(event.gateway_cost_usd)
            if counts.requests == 0:
                del rollup.groups[group]
                rollup.gateway_cost.pop(group, None)
        rollup.new_requests = list(counted)
        rollup.new_request_hours = [event.timestamp // HOUR_MS for event, _ in counted.values()]
        rollup.outcomes[Outcome(DUPLICATE)] += len(confirmed_seen)
        rollup.outcomes[Outcome(COUNTED)] += len(counted)
        rollup.costs = {group: self.rates[group.price_version].price(counts)
                        for group, counts in rollup.groups.items() if group.price_version != UNPRICED}
        return rollup


class RollupBuilder:
    """Validates, bounds, deduplicates within the flush, prices and groups one partition's messages."""

    def __init__(self, decoder: ContractDecoder, prices: PriceLookup) -> None:
        self._decoder = decoder
        self._prices = prices

    def draft(self, messages: Iterable[RawMessage], bounds: TimeBounds, seen: SeenRequests) -> Draft:
        rollup = Rollup()
        groups, gateway = rollup.groups, rollup.gateway_cost
        rates: dict[str, RateLike] = {}
        counted: dict[RequestKey, tuple[UsageEvent, Dimensions]] = {}
        old: list[RequestKey] = []
        duplicates = 0
        oldest, newest, horizon = bounds.oldest_ms, bounds.newest_ms, bounds.horizon_ms
        decode, rate_for = self._decoder.decode, self._prices.rate_for
        for message in messages:
            events, rejections = decode(message.value, message.key)
            for rejection in rejections:
                rollup.dead_letters.append(DeadLetter(message.offset, rejection))
            for position, event in enumerate(events):
                ts = event.timestamp
                if ts < oldest or ts > newest:
                    rejection = _out_of_bounds(event, bounds, *_locate(message.value, position, rejections))
                    rollup.dead_letters.append(DeadLetter(message.offset, rejection))
                    continue
                request = (event.api_key_id, event.request_id)
                if request in counted:
                    duplicates += 1
                    continue
                try:
                    if event.service_tier:
                        rate = rate_for(event.model, event.provider or None, ts, event.input_tokens,
                                        event.service_tier)
                    else:
                        rate = rate_for(event.model, event.provider or None, ts, event.input_tokens)
                except Exception as error:  # this event's fault (an odd model id): never stop metering
                    rejection = _unmappable(event, error, *_locate(message.value, position, rejections))
                    rollup.dead_letters.append(DeadLetter(message.offset, rejection))
                    continue
                # A plain tuple equals (and hashes as) the Dimensions it names; only a new group builds one.
                group = (event.api_key_id, event.org_id, event.project_id, event.model, event.provider,
                         ts // WINDOW_MS, UNPRICED if rate is None else rate.version)
                counts = groups.get(group)
                if counts is None:
                    group = Dimensions._make(group)
                    counts = groups[group] = Counts()
                    if rate is not None:
                        rates[rate.version] = rate
                counts.add(event)
                if event.usage is not None and rate is not None:
                    _price_apart(rate, event, counts, 1)
                if event.gateway_cost_usd is not None:
                    gateway[group] = gateway.get(group, Decimal(0)) + Decimal(event.gateway_cost_usd)
                counted[request] = (event, group)
                if ts < horizon:
                    old.append(request)
        for letter in rollup.dead_letters:
            rollup.outcomes[Outcome(REJECTED, letter.rejection.reason)] += 1
        rollup.outcomes[Outcome(DUPLICATE)] += duplicates
        return Draft(rollup, counted, _maybe_seen(list(counted), seen, old), rates)


def _price_apart(rate: RateLike, event: UsageEvent, counts: Counts, sign: int) -> None:
    """Adds (sign -1: takes back) the event's costs of the units its rate prices event by event."""
    if rate.apart and (costs := rate.price_apart(unit_values(event))):
        counts.add_priced_apart(costs, sign)


def _maybe_seen(requests: list[tuple[str, str]], seen: SeenRequests, old: list[tuple[str, str]]) -> list[RequestKey]:
    """Requests the filter may hold (a 64-bit hash hit on the request id: a prefilter, ClickHouse confirms the
    key too), plus requests older than its horizon, which it never holds."""
    if not requests:
        return []
    hits = np.flatnonzero(seen.maybe_seen(request_id_hashes([request_id for _, request_id in requests])))
    return [RequestKey(*request) for request in {requests[i] for i in hits}.union(old)]


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


def _unmappable(event: UsageEvent, error: Exception, raw: bytes, index: int | None) -> Rejection:
    detail = f"pricing model {event.model[:100]!r} (provider {event.provider[:100]!r}) failed: {type(error).__name__}"
    return Rejection("mapping_failed", f"{detail}: {error}"[:500], raw, index)


def _out_of_bounds(event: UsageEvent, bounds: TimeBounds, raw: bytes, index: int | None) -> Rejection:
    reason, detail = time_bounds_problem(event.timestamp, bounds.now_ms, bounds.max_lateness_ms,
                                         bounds.max_future_skew_ms)
    return Rejection(reason, detail, raw, index)
