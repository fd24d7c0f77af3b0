"""The rollup's shape, declared once: its dimensions (what a row is grouped by) and its measures (what is
summed), in OLAP terms.

The write path (``metering.rollup`` accumulates :class:`Counts`, ``metering.sink`` encodes rows) and the read
path (``usage.query`` builds its ``sum()`` lists, ``usage.export`` its CSV columns, the API its JSON) all read
these declarations, so names, order and units cannot drift between them. Adding a usage measure is one
:class:`Measure` here, its line in :meth:`Counts.add` (a unit test fails until it is there), and the
migration that adds its column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from pipeline.contract import UsageEvent


@dataclass(frozen=True)
class Measure:
    """A summed column of ``rollups`` and its views (``usage_15m``, ``usage_hourly``); ``name`` is also its name
    in the API and CSV."""

    name: str
    unit: Literal["requests", "tokens", "USD"]
    description: str


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

# Summed from each event by Counts.add: the fields of Counts, in this order.
COUNTED = (REQUESTS, ERROR_REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ_TOKENS, CACHE_WRITE_TOKENS,
           REASONING_TOKENS, GATEWAY_COST_REQUESTS)
COSTS = (INPUT_COST, OUTPUT_COST, TOTAL_COST)  # computed from Counts by pricing, per group
# Every summed column of usage_15m and usage_hourly.
USAGE_MEASURES = (*COUNTED, UNPRICED_REQUESTS, *COSTS, GATEWAY_COST)
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


class Counts:
    """The running sums of one group, one attribute per measure of :data:`COUNTED`."""

    __slots__ = tuple(measure.name for measure in COUNTED)

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

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

    def subtract(self, event: UsageEvent) -> None:
        """Takes one event back out (a duplicate found after it was added; rare)."""
        one = Counts()
        one.add(event)
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) - getattr(one, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"Counts({self.as_dict()})"
