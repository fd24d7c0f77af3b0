"""The rollup's shape, declared once: its dimensions (what a row is grouped by) and its measures (what is
summed), in OLAP terms.

The write path (``metering.rollup`` accumulates :class:`Counts`, ``metering.sink`` encodes rows) and the read
path (``usage.query`` builds its ``sum()`` lists, ``usage.export`` its CSV columns, the API its JSON) all read
these declarations, so names, order and units cannot drift between them. Adding a usage measure is one
:class:`Measure` here, its line in :meth:`Counts.add` (a unit test fails until it is there), and the
migration that adds its column.

Units beyond the five token columns (audio, image and video tokens, 1 h cache writes, web searches, ... in
genai-prices' vocabulary, pipeline/units.py) are two *per-unit* measures: ``units`` (counts by unit name) and
``unit_costs`` (cost by priced unit), ClickHouse ``Map`` columns summed key by key (``sumMap``). A new unit
therefore needs no new column: only its declaration in pipeline/units.py.

``unit_costs`` never stores the two *remainders* (:data:`REMAINDERS`), the uncached text ``input_tokens`` and
``output_tokens``: their cost is exactly the side's cost less the side's other unit costs, so every reader fills
them in with :func:`costs_by_unit`, and a row of plain events stores an empty map (the write path's cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar

from pipeline.metering.money import EXACT
from pipeline.units import IMPLICIT, TOP_LEVEL, UNITS as UNIT_REGISTRY

if TYPE_CHECKING:
    from pipeline.contract import UsageEvent


@dataclass(frozen=True)
class Measure:
    """A summed column of ``rollups`` and its views (``usage_15m``, ``usage_hourly``); ``name`` is also its name
    in the API and CSV."""

    name: str
    unit: Literal["requests", "tokens", "units", "USD"]  # "units": each key's count in that unit's own measure
    description: str
    per_unit: bool = False  # a Map(String, ...) keyed by unit name, summed key by key (sumMap)


REQUESTS = Measure("requests", "requests", "Requests counted (each request_id once).")
ERROR_REQUESTS = Measure("error_requests", "requests", "Requests the gateway reported with status error.")
INPUT_TOKENS = Measure("input_tokens", "tokens", "All input tokens, cache reads and writes included.")
OUTPUT_TOKENS = Measure("output_tokens", "tokens", "All output tokens, reasoning included.")
CACHE_READ_TOKENS = Measure("cache_read_tokens", "tokens", "Input tokens read from the prompt cache.")
CACHE_WRITE_TOKENS = Measure("cache_write_tokens", "tokens", "Input tokens written to the prompt cache.")
REASONING_TOKENS = Measure("reasoning_tokens", "tokens", "Output tokens spent on reasoning.")
GATEWAY_COST_REQUESTS = Measure("gateway_cost_requests", "requests", "Requests that carried gateway_cost_usd.")
UNPRICED_REQUESTS = Measure("unpriced_requests", "requests", "Requests of a model with no known price (cost 0).")
INPUT_COST = Measure("input_cost", "USD", "Cost of the input side, per genai-prices or an override.")
OUTPUT_COST = Measure("output_cost", "USD", "Cost of the output side.")
TOTAL_COST = Measure("total_cost", "USD", "input_cost + output_cost.")
GATEWAY_COST = Measure("gateway_cost", "USD", "Sum of the gateways' own gateway_cost_usd, for reconciliation.")
UNITS = Measure("units", "units", "Counts of the units reported in the events' usage object (beyond the token "
                "columns), by genai-prices unit name: tokens, seconds, searches, pages, ...", per_unit=True)
UNIT_COSTS = Measure("unit_costs", "USD", "Cost by priced unit, by genai-prices unit name: each priced unit's leaf "
                     "count (the units it counts that no more specific priced unit counts) times its price; the "
                     "values sum to total_cost exactly.", per_unit=True)

# The remainder of each side, per genai-prices: the leaf of input_tokens (input tokens no other priced unit
# counts: uncached text) and of output_tokens. Stored unit_costs omit them (the writer, pipeline/metering/pricing.py
# Rate.price); costs_by_unit derives them.
INPUT_REMAINDER, OUTPUT_REMAINDER = "input_tokens", "output_tokens"
REMAINDERS = frozenset((INPUT_REMAINDER, OUTPUT_REMAINDER))
# Units whose cost counts in output_cost (genai-prices' direction "output"); every other unit's cost counts in
# input_cost, units without a direction included (requests, web searches, audio seconds overall), as pricing
# sums them (pipeline/metering/pricing.py).
OUTPUT_SIDE = frozenset(unit.name for unit in UNIT_REGISTRY if unit.direction == "output")

Money = TypeVar("Money", int, Decimal)


def costs_by_unit(stored: Mapping[str, Money], input_cost: Money, output_cost: Money) -> dict[str, Money]:
    """Every priced unit's cost of a row or of any sum of rows, non-zero entries only, keys sorted; they sum to
    ``input_cost + output_cost`` (``total_cost``) exactly. The one reader of ``unit_costs`` (API, usage page,
    CSV, tests).

    ``stored``: the (summed) ``unit_costs`` map, USD (Decimal) or integer units of 1e-24 USD (int, like the
    costs). The two remainders are derived: ``input_tokens`` = ``input_cost`` - the other input-side entries,
    ``output_tokens`` = ``output_cost`` - the other output-side entries (:data:`OUTPUT_SIDE`). Stored remainder
    entries are ignored: rows written before the remainders were left out hold them, and a sum over such rows
    and newer ones holds only part of the remainder, whereas every row, old or new, has input_cost = the sum
    of its input-side costs, remainder included, so the derivation is exact for any mix. (Rows written before
    ``unit_costs`` existed, migration 0007, have an empty map: their whole cost shows as the two remainders.)
    """
    input_rest, output_rest = input_cost, output_cost
    costs = {}
    with localcontext(EXACT):  # Decimal(38, 24) differences need 39 digits, beyond Python's default 28
        for name, cost in stored.items():
            if name in REMAINDERS:
                continue
            if name in OUTPUT_SIDE:
                output_rest -= cost
            else:
                input_rest -= cost
            if cost:
                costs[name] = cost
    costs[INPUT_REMAINDER], costs[OUTPUT_REMAINDER] = input_rest, output_rest
    return {name: costs[name] for name in sorted(costs) if costs[name]}

# Summed from each event by Counts.add: the fields of Counts, in this order.
COUNTED = (REQUESTS, ERROR_REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ_TOKENS, CACHE_WRITE_TOKENS,
           REASONING_TOKENS, GATEWAY_COST_REQUESTS)
COSTS = (INPUT_COST, OUTPUT_COST, TOTAL_COST)  # computed from Counts by pricing, per group
PER_UNIT = (UNITS, UNIT_COSTS)  # Counts.units; Cost.by_unit
# Every summed column of usage_15m and usage_hourly.
USAGE_MEASURES = (*COUNTED, UNPRICED_REQUESTS, *COSTS, GATEWAY_COST, *PER_UNIT)
BY_NAME = {measure.name: measure for measure in USAGE_MEASURES}


class Dimensions(NamedTuple):
    """A rollup row's group key. A plain tuple of the same values is equal and hashes the same, so the hot
    path builds tuples and only a new group becomes a Dimensions."""

    api_key_id: str
    org_id: str
    project_id: str
    model: str
    provider: str
    window: int  # 15-minute windows since the epoch, UTC (pipeline.clock.WINDOW_MS)
    price_version: str  # the price sheet that priced the row; UNPRICED when none did


UNPRICED = ""
# Unit name (pipeline/units.py) -> the Counts column that sums it.
_COLUMN_OF = {unit: field for field, unit in TOP_LEVEL.items()} | {IMPLICIT: REQUESTS.name}


class Counts:
    """The running sums of one group, one attribute per measure of :data:`COUNTED`, plus ``units`` (the summed
    ``usage`` objects; None while no event of the group had one) and ``priced_apart`` (cost units of the units
    a rate prices event by event, see ``pricing.Rate.price_apart``; None while there is none)."""

    __slots__ = (*(measure.name for measure in COUNTED), "units", "priced_apart")
    _SUMMED = tuple(measure.name for measure in COUNTED)

    def __init__(self) -> None:  # one per new group: spelled out, as a loop over __slots__ costs 4x more
        self.requests = self.error_requests = self.input_tokens = self.output_tokens = 0
        self.cache_read_tokens = self.cache_write_tokens = self.reasoning_tokens = self.gateway_cost_requests = 0
        self.units: dict[str, int] | None = None
        self.priced_apart: dict[str, int] | None = None

    def add(self, event: UsageEvent) -> None:
        """Adds one valid event (the per-event hot path: straight-line attribute arithmetic)."""
        self.requests += 1
        if event.status == "error":
            self.error_requests += 1
        self.input_tokens += event.input_tokens
        self.output_tokens += event.output_tokens
        self.cache_read_tokens += event.cache_read_tokens
        self.cache_write_tokens += event.cache_write_tokens
        self.reasoning_tokens += event.reasoning_tokens
        if event.gateway_cost_usd is not None:
            self.gateway_cost_requests += 1
        if event.usage is not None:
            self.add_units(event.usage)

    def add_units(self, usage: dict[str, int], sign: int = 1) -> None:
        """Adds (``sign`` -1: subtracts) the counts of one event's ``usage`` object."""
        units = self.units
        if units is None:
            units = self.units = {}
        for name, count in usage.items():
            units[name] = units.get(name, 0) + sign * count

    def add_priced_apart(self, costs: dict[str, int], sign: int = 1) -> None:
        """Adds (``sign`` -1: subtracts) one event's cost units of units priced event by event."""
        priced = self.priced_apart
        if priced is None:
            priced = self.priced_apart = {}
        for name, units in costs.items():
            priced[name] = priced.get(name, 0) + sign * units

    def subtract(self, event: UsageEvent) -> None:
        """Takes one event back out (a duplicate found after it was added; rare). The caller takes back its
        ``priced_apart`` costs, which depend on the rate."""
        one = Counts()
        one.add(event)
        for name in self._SUMMED:
            setattr(self, name, getattr(self, name) - getattr(one, name))
        if event.usage is not None:
            self.add_units(event.usage, -1)

    def value(self, unit: str) -> int:
        """The summed count of a unit (genai-prices name, pipeline/units.py); ``requests`` is the request count."""
        column = _COLUMN_OF.get(unit)
        if column is not None:
            return getattr(self, column)
        return self.units.get(unit, 0) if self.units else 0

    def as_dict(self) -> dict:
        counts: dict = {name: getattr(self, name) for name in self._SUMMED}
        if self.units:
            counts["units"] = {name: n for name, n in self.units.items() if n}
        return counts

    def __repr__(self) -> str:
        return f"Counts({self.as_dict()})"
