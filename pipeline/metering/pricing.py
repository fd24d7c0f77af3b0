"""Exact, fast pricing of every usage unit genai-prices prices, at each event's own time and tier.

How genai-prices prices usage (``ModelPrice.calc_price``): a price sheet prices a set of units closed under
"whole of" and "overlap of" (pipeline/units.py); each priced unit's *leaf* count (its count less the leaves of
its priced parts) is multiplied by its price, so every token is priced once, at the most specific price the
sheet has for it. Within one sheet and one tier that is linear in the counts, so a :class:`Rate` prices the
*summed* counts of any number of events exactly, leaf by leaf, and says what each unit cost
(:attr:`Cost.by_unit`, the rollups' ``unit_costs``, which leave out the two remainders ``input_tokens`` and
``output_tokens``: readers derive them, pipeline/measures.py ``costs_by_unit``). Only the bundled snapshot is
used: live price updates are never enabled.

Lookup (:meth:`PriceBook.rate_for`, cached per model, provider, service tier and UTC minute):

* The model id is resolved first (pipeline/metering/models.py: operator aliases, provider prefixes, Bedrock ids,
  case).
* Overrides (pipeline/metering/overrides.py) win: among the entries for the model (and the provider, when the
  entry names one) in effect at the event's time, the newest ``effective_from`` wins; at equal dates an entry
  for the event's service tier, then one for its provider, then one with a schedule that holds the event's
  time, wins over the more general one. A tier ``multiplier`` scales the price that applies without the tier.
* Otherwise genai-prices, at the event's time, with the event's service tier as genai-prices' *price
  context* (:func:`price_context`: ``batch`` selects its batch-processing prices, ``flex`` / ``priority`` its
  tier prices); a provider it knows prices with that provider's price (or its fallback providers', e.g. azure
  -> openai, where genai-prices applies no tier prices); a provider it does not know is ignored; no match ->
  None, counted as unpriced.
* genai-prices puts per-request fees and units without a direction (web searches, audio seconds overall) in
  ``total_price`` only; here they go to the input side, so input + output always equals genai-prices' total.
* Money is integer units of 1e-24 USD (ClickHouse ``Decimal(38, 24)``). A sheet whose price of one token or
  one request needs more than 24 decimal places is unpriced (none in the pinned snapshot; a test pins that).
  Per-second audio prices often do not terminate (0.111 / 3600): those units are priced event by event,
  rounded half-even to 1e-24 USD per unit (:meth:`Rate.price_apart`), with genai-prices' own adjustments
  (Groq's 10-second minimum). Counts meet the contract (pipeline/units.py), so no leaf is negative.

Rate versions: ``genai-prices <version> <provider>/<model>``, plus `` p<i> <constraint>`` for the i-th
conditional price (``from 2026-03-13``, ``00:30-16:30Z``), `` in<=N`` / `` in>N`` for tiers and
`` +<tier> v<i>,…`` for the price variants a service tier applied; an override is ``override
[<provider>/]<model> <effective_from>`` with `` tier=<tier>`` and its schedule when it has them, and
`` x<multiplier> <tier>`` when a tier multiplier scaled it.

The chosen sheet is cached per UTC minute: constraint boundaries in the snapshot fall on whole UTC minutes (a
test proves it), override schedules are in whole local minutes, and a minute whose zone offset is not whole
(or changes inside it) is not cached but judged at the event's millisecond.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import genai_prices
from genai_prices import Usage, data
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import ModelInfo, ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint

from pipeline.clock import MINUTE_MS
from pipeline.measures import REMAINDERS, Counts, costs_by_unit
from pipeline.metering.models import ModelResolver, Resolved
from pipeline.metering.money import (EXACT, USD_DECIMALS, USD_SCALE, PricingError, divide_half_even, quantize_usd,
                                     round_usd, to_units, usd_text)
from pipeline.metering.overrides import ANY_MODEL, NONE, PRICE_KEYS, PriceOverride, PriceOverrides, load_overrides
from pipeline.units import BY_NAME, TOP_LEVEL, USAGE_UNITS, Decomposition, decomposition

__all__ = ("EXACT", "USD_DECIMALS", "USD_SCALE", "PricingError", "quantize_usd", "usd_text", "Cost", "Rate",
           "TieredRates", "PriceBook", "PriceOverride", "load_overrides", "price_context", "snapshot_rates")

MAX_CACHED = 100_000  # bounds memory if model/provider strings are high-cardinality
_MISS = object()
_NO_UNITS: dict[str, int] = {}  # Cost.by_unit of a group of plain events: shared, never mutated
_log = logging.getLogger(__name__)
# Units an event may carry only in its usage object: the only ones a Rate may price event by event.
_APART_ALLOWED = frozenset(USAGE_UNITS)
# genai-prices bills these Groq models at least 10 seconds per request (genai_prices/types.py,
# ModelInfo.calc_price; Groq's speech-to-text pricing).
GROQ_MINIMUM_SECONDS = {("groq", "whisper-large-v3"): 10, ("groq", "whisper-large-v3-turbo"): 10}


def price_context(service_tier: str) -> dict[str, str]:
    """genai-prices' price context for an event's ``service_tier`` (lower-cased): ``batch`` is its
    ``processing: batch`` (batch APIs), ``fast`` also its ``speed: fast``; anything else its ``service_tier``
    (OpenAI's and Google's ``flex`` / ``priority``; ``default`` or ``standard`` select the standard prices)."""
    tier = service_tier.strip().lower()
    if tier == "batch":
        return {"processing": "batch", "service_tier": "batch"}
    if tier == "fast":
        return {"service_tier": "fast", "speed": "fast"}
    return {"service_tier": tier}


class Cost(NamedTuple):
    """The exact cost of summed usage, in integer units of 1e-24 USD (ClickHouse ``Decimal(38, 24)``).
    ``by_unit``: the cost of each priced unit with a non-zero cost (unit name -> units), except the two
    remainders ``input_tokens`` and ``output_tokens`` (pipeline/measures.py :data:`REMAINDERS`), whose costs
    are the sides' costs less the other units' (:meth:`all_units`): it is what the rollups' ``unit_costs``
    stores, empty for a group of plain events. (A NamedTuple: one is built per rollup group, on the hot path.)"""

    input_units: int
    output_units: int
    by_unit: Mapping[str, int] = {}  # noqa: RUF012 - shared, never mutated (msgspec encodes a dict, not a proxy)

    @property
    def total_units(self) -> int:
        return self.input_units + self.output_units

    def all_units(self) -> dict[str, int]:
        """The cost of every priced unit with a non-zero cost, the remainders included (as readers show it);
        it sums to :attr:`total_units`."""
        return costs_by_unit(self.by_unit, self.input_units, self.output_units)


class Rate:
    """One price sheet, flattened to one tier: USD per ``per`` units of each priced unit (genai-prices' own
    amounts). Equal sheets are equal Rates; the rollup groups events by :attr:`version`.

    :meth:`price` prices a group's summed :class:`~pipeline.measures.Counts` leaf by leaf; units whose price of
    one unit is not a whole number of 1e-24 USD (:attr:`apart`) are priced per event by :meth:`price_apart`
    and summed in ``Counts.priced_apart``.
    """

    __slots__ = ("version", "prices", "minimum_seconds", "apart", "_plan", "_unit_prices", "_output", "_stored",
                 "_fast", "_apart_blocks", "_hash")

    def __init__(self, version: str, prices: Mapping[str, Decimal], minimum_seconds: int = 0) -> None:
        self.version = version
        self.prices = tuple(sorted(prices.items()))  # (unit name, USD per BY_NAME[unit].per)
        self.minimum_seconds = minimum_seconds
        self._plan = Decomposition(frozenset(prices))
        unit_prices: list[int | None] = []
        apart: dict[str, tuple[int, int]] = {}
        for name in self._plan.order:
            block = to_units(prices[name])  # USD per `per` units; PricingError past 24 decimal places
            per_unit, remainder = divmod(block, BY_NAME[name].per)
            if not remainder:
                unit_prices.append(per_unit)
            elif name in _APART_ALLOWED:
                unit_prices.append(None)
                apart[name] = (block, BY_NAME[name].per)
            else:
                raise PricingError(f"{version}: one {BY_NAME[name].counts} of {name} costs {prices[name]} / "
                                   f"{BY_NAME[name].per} USD, more than {USD_DECIMALS} decimal places")
        self._unit_prices = tuple(unit_prices)
        self._apart_blocks = apart
        self.apart = frozenset(apart)
        self._output = tuple(BY_NAME[name].direction == "output" for name in self._plan.order)
        self._stored = tuple(name not in REMAINDERS for name in self._plan.order)
        self._fast = self._fast_coefficients()
        self._hash = hash((self.version, self.prices))

    def _fast_coefficients(self) -> tuple[int | None, ...]:
        """Price of one token of each top-level kind and of one request; None for a cache read, cache write or
        reasoning token the sheet does not price on its own (genai-prices then prices it as its whole)."""
        price = dict(zip(self._plan.order, self._unit_prices))
        return (price.get("input_tokens", 0), price.get("cache_read_tokens"), price.get("cache_write_tokens"),
                price.get("output_tokens", 0), price.get("output_reasoning_tokens"), price.get("requests"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rate) and (self.version, self.prices, self.minimum_seconds) == (
            other.version, other.prices, other.minimum_seconds)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Rate({self.version!r})"

    def price(self, counts: Counts) -> Cost:
        """The exact cost of a group's summed counts (all priced with this rate)."""
        if counts.units is None:
            return self._price_top_level(counts)
        values = {name: counts.value(name) for name in self._plan.order}
        leaves = self._plan.leaves(values)
        apart = counts.priced_apart or {}
        by_unit: dict[str, int] = {}
        input_units = output_units = 0
        for name, leaf, unit_price, output, stored in zip(self._plan.order, leaves, self._unit_prices, self._output,
                                                          self._stored):
            cost = apart.get(name, 0) if unit_price is None else leaf * unit_price
            if cost:
                if stored:
                    by_unit[name] = cost
                if output:
                    output_units += cost
                else:
                    input_units += cost
        return Cost(input_units, output_units, by_unit)

    def _price_top_level(self, c: Counts) -> Cost:
        """The common case, a group without ``usage`` units: a few products, as cheap as it gets. The
        remainders (input_tokens, output_tokens) are in the sides' costs only, never in ``by_unit``."""
        i, cr, cw, o, r, req = self._fast
        leaf_in, leaf_out = c.input_tokens, c.output_tokens
        by_unit = {}
        if cr is not None and (n := c.cache_read_tokens):
            leaf_in -= n
            if cost := n * cr:
                by_unit["cache_read_tokens"] = cost
        if cw is not None and (n := c.cache_write_tokens):
            leaf_in -= n
            if cost := n * cw:
                by_unit["cache_write_tokens"] = cost
        if req and (cost := c.requests * req):
            by_unit["requests"] = cost
        input_units = leaf_in * i
        if by_unit:
            input_units += sum(by_unit.values())
        if r is not None and (n := c.reasoning_tokens):
            leaf_out -= n
            if cost := n * r:
                by_unit["output_reasoning_tokens"] = cost
                return Cost(input_units, leaf_out * o + cost, by_unit)
        return Cost(input_units, leaf_out * o, by_unit or _NO_UNITS)

    def price_apart(self, values: Mapping[str, int]) -> dict[str, int] | None:
        """One event's cost units of the :attr:`apart` units (its unit values: top-level and ``usage``); None
        when it has none of them. The exact costs are rounded half-even to 1e-24 USD once per side of the event
        (output units, then the rest), as genai-prices' own per-event sums would be, and split by unit with
        cumulative rounding so the units add up to the rounded sides. Applies genai-prices' minimum billed
        seconds where it has one."""
        if not any(values.get(name) for name in self.apart):
            return None
        if self.minimum_seconds:
            values = self._billed_seconds(values)
        exact = [(self._output[i], name, Fraction(self._apart_blocks[name][0] * leaf, self._apart_blocks[name][1]))
                 for i, (name, leaf) in enumerate(zip(self._plan.order, self._plan.leaves(values)))
                 if name in self._apart_blocks and leaf]
        costs = {}
        running, rounded = Fraction(0), 0
        for output in (True, False):  # the output side's sum is rounded on its own, like genai-prices' output_price
            for is_output, name, cost in exact:
                if is_output is output:
                    running += cost
                    now = divide_half_even(running.numerator, running.denominator)
                    costs[name], rounded = now - rounded, now
        return costs

    def _billed_seconds(self, values: Mapping[str, int]) -> dict[str, int]:
        """genai-prices' rule for Groq's Whisper models: seconds billed are at least the minimum, and both
        audio_seconds and input_audio_seconds are set to them."""
        reported = values.get("audio_seconds") or values.get("input_audio_seconds", 0)
        billed = max(reported, self.minimum_seconds) if reported > 0 else 0
        return {**values, "audio_seconds": billed, "input_audio_seconds": billed}

    def cost(self, requests: int, input_tokens: int, cache_read_tokens: int = 0, cache_write_tokens: int = 0,
             output_tokens: int = 0, reasoning_tokens: int = 0, **units: int) -> tuple[Decimal, Decimal]:
        """(input_cost, output_cost) in USD of summed counts given by name (tests and tools; the pipeline
        prices :class:`Counts`)."""
        counts = Counts()
        counts.requests, counts.input_tokens, counts.output_tokens = requests, input_tokens, output_tokens
        counts.cache_read_tokens, counts.cache_write_tokens = cache_read_tokens, cache_write_tokens
        counts.reasoning_tokens = reasoning_tokens
        if units:
            counts.add_units(units)
        cost = self.price(counts)
        return Decimal(cost.input_units).scaleb(-USD_DECIMALS), Decimal(cost.output_units).scaleb(-USD_DECIMALS)

    def scaled(self, multiplier: Decimal, suffix: str) -> Rate:
        """This rate with every price times ``multiplier`` (a service tier's multiplier)."""
        with localcontext(EXACT):
            return Rate(f"{self.version}{suffix}", {name: price * multiplier for name, price in self.prices},
                        self.minimum_seconds)


class TieredRates(NamedTuple):
    """The Rates of one tiered sheet: rates[i] for input_tokens > starts[i-1] and <= starts[i]."""

    starts: tuple[int, ...]
    rates: tuple[Rate | None, ...]

    def rate_for(self, input_tokens: int) -> Rate | None:
        return self.rates[bisect_left(self.starts, input_tokens)]

    def scaled(self, multiplier: Decimal, suffix: str) -> TieredRates:
        return TieredRates(self.starts, tuple(r and r.scaled(multiplier, suffix) for r in self.rates))


Priced = Rate | TieredRates | None


# ---- genai-prices sheets ----------------------------------------------------------------------------------

def _sheets(owner: str, model: ModelInfo) -> list[tuple[str, ModelPrice]]:
    """Each price sheet of the model, with the version that identifies it."""
    version = f"genai-prices {genai_prices.__version__} {owner}/{model.id}"
    if isinstance(model.prices, ModelPrice):
        return [(version, model.prices)]
    return [(f"{version} p{index}{_describe(c.constraint)}", c.prices) for index, c in enumerate(model.prices)]


def _describe(constraint: StartDateConstraint | TimeOfDateConstraint | None) -> str:
    if isinstance(constraint, StartDateConstraint):
        return f" from {constraint.start_date.isoformat()}"
    if isinstance(constraint, TimeOfDateConstraint):
        start, end = (datetime.combine(date(2000, 1, 1), t, t.tzinfo or UTC).astimezone(UTC)
                      for t in (constraint.start_time, constraint.end_time))
        return f" {start:%H:%M}-{end:%H:%M}Z"
    return ""


def _sheet_prices(sheet: ModelPrice) -> dict[str, Decimal | TieredPrices]:
    """Unit name -> price of every unit the sheet prices (genai-prices' price keys mapped to unit names)."""
    prices = {}
    for key, value in vars(sheet).items():
        if value is None or key.startswith("_"):
            continue
        if key not in PRICE_KEYS:
            raise PricingError(f"genai-prices price key {key!r} is not in pipeline/units.py: update the unit table")
        prices[PRICE_KEYS[key]] = value
    return prices


def sheet_rates(version: str, sheet: ModelPrice, minimum_seconds: int = 0) -> Rate | TieredRates:
    """The Rate of a sheet, or one Rate per input-token band of a tiered sheet (genai-prices' tiers: the
    whole request is priced at the tier its input_tokens exceed)."""
    prices = _sheet_prices(sheet)
    starts = sorted({tier.start for price in prices.values() if isinstance(price, TieredPrices) for tier in price.tiers})
    if not starts:
        return _derive_rate(version, prices, sheet, 10, minimum_seconds)  # type: ignore[arg-type]
    bands = [(f" in<={starts[0]}", min(10, starts[0]))] + [(f" in>{start}", start + 1) for start in starts]
    return TieredRates(tuple(starts), tuple(
        _derive_rate(version + suffix, _flatten(prices, inside), sheet, inside, minimum_seconds)
        for suffix, inside in bands))


def _flatten(prices: dict[str, Decimal | TieredPrices], input_tokens: int) -> dict[str, Decimal]:
    """Each TieredPrices replaced by the tier genai-prices picks for ``input_tokens``."""
    def pick(price: Decimal | TieredPrices) -> Decimal:
        if not isinstance(price, TieredPrices):
            return price
        return next((t.price for t in reversed(price.tiers) if input_tokens > t.start), price.base)
    return {name: pick(price) for name, price in prices.items()}


def _derive_rate(version: str, prices: dict[str, Decimal], sheet: ModelPrice, inside: int,
                 minimum_seconds: int) -> Rate:
    """The Rate of flat prices, checked against genai-prices itself (on the original, possibly tiered, sheet)
    with a usage in the band that exercises every unit the sheet prices: a change of genai-prices' semantics
    fails here, loudly, instead of pricing wrong."""
    rate = Rate(version, prices, minimum_seconds)
    values = _probe(frozenset(prices), inside)
    counts = Counts()
    counts.requests = 1
    for field_name, unit in TOP_LEVEL.items():
        setattr(counts, field_name, values.get(unit, 0))
    counts.add_units({name: v for name, v in values.items() if name in _APART_ALLOWED})
    if rate.apart:
        counts.priced_apart = rate.price_apart(values)
        values = rate._billed_seconds(values) if minimum_seconds else values
    ours = rate.price(counts)
    with localcontext(EXACT.copy()) as context:
        context.traps[Inexact] = False  # genai-prices divides per-second prices with rounding
        expected = sheet.calc_price(Usage(**{n: v for n, v in values.items() if n != "requests"}))
    want = [expected["total_price"], expected["output_price"]]
    if rate.apart:
        want = [round_usd(amount) for amount in want]
    got = [Decimal(ours.total_units).scaleb(-USD_DECIMALS), Decimal(ours.output_units).scaleb(-USD_DECIMALS)]
    if got != want:
        raise PricingError(f"{version}: genai-prices is not linear as assumed; pricing would be inexact "
                           f"(total, output: {got} != {want})")
    return rate


def _probe(priced: frozenset[str], inside: int) -> dict[str, int]:
    """Consistent values for every priced unit (and input/output): leaf values of 1..3 per unit, each unit's
    value its leaf plus its parts' leaves, and input_tokens made up to ``inside`` where it is smaller."""
    plan = decomposition(priced | {"input_tokens", "output_tokens"})
    leaves = [1 + index % 3 for index in range(len(plan.order))]
    values = {name: leaves[index] + sum(leaves[i] for i in plan.parts_in[index])
              for index, name in enumerate(plan.order)}
    values["input_tokens"] = max(values["input_tokens"], inside)
    values["requests"] = 1
    return values


def snapshot_rates() -> Iterator[Rate]:
    """Every Rate derivable from the bundled snapshot's standard prices (all providers, models, periods,
    tiers)."""
    for provider in data.providers:
        for model in provider.models:
            minimum = GROQ_MINIMUM_SECONDS.get((provider.id, model.id), 0)
            for version, sheet in _sheets(provider.id, model):
                priced = sheet_rates(version, sheet, minimum)
                yield from (r for r in priced.rates if r) if isinstance(priced, TieredRates) else (priced,)


# ---- the price book -----------------------------------------------------------------------------------------

class PriceBook:
    """Prices events: overrides first, then the bundled genai-prices snapshot (see the module docstring).

    Each price sheet, tier and service-tier variant is derived once into one Rate object, so equal inputs
    return the same Rate.
    """

    def __init__(self, overrides: PriceOverrides | Sequence[PriceOverride] = NONE) -> None:
        if not isinstance(overrides, PriceOverrides):
            overrides = PriceOverrides(tuple(overrides))
        self._snapshot = DataSnapshot(providers=data.providers, from_auto_update=False)
        self._resolver = ModelResolver(self._snapshot, overrides.aliases)
        self._aliases = overrides.aliases
        # model (lower case) -> [(effective_from ms, override)], best first (see _override)
        self._overrides: dict[str, list[tuple[int, PriceOverride]]] = {}
        self._multipliers: dict[str, list[tuple[int, PriceOverride]]] = {}
        ranked = sorted(enumerate(overrides.prices), key=lambda item: (_precedence(item[1]), item[0]), reverse=True)
        for _, o in ranked:
            table = self._multipliers if o.multiplier is not None else self._overrides
            table.setdefault(o.model.lower(), []).append((int(o.effective_from.timestamp() * 1000), o))
        self._override_rates: dict[int, Rate] = {}
        self._by_minute: dict[tuple[str, str | None, int], Priced] = {}
        self._by_tier_minute: dict[tuple[str, str | None, str, int], Priced] = {}
        self._models: dict[tuple[str, str | None], Resolved | None] = {}
        self._sheets: dict[tuple, Priced] = {}

    @classmethod
    def from_file(cls, path: Path | None) -> PriceBook:
        return cls(load_overrides(path) if path is not None else NONE)

    def rate_for(self, model: str, provider: str | None, ts_ms: int, input_tokens: int,
                 service_tier: str = "") -> Rate | None:
        """The rate that prices one event of this model at its own timestamp (epoch ms, UTC), tier and input
        tokens. None when the model has no price (the caller counts it as unpriced, never drops it)."""
        if service_tier:
            return self._tiered_rate_for(model, provider, ts_ms, input_tokens, service_tier.lower())
        minute = ts_ms // MINUTE_MS
        priced = self._by_minute.get((model, provider, minute), _MISS)
        if priced is _MISS:
            priced, stable = self._price(model, provider, "", ts_ms)
            if stable:
                if len(self._by_minute) >= MAX_CACHED:
                    self._by_minute.clear()
                self._by_minute[(model, provider, minute)] = priced
        if priced.__class__ is TieredRates:
            return priced.rate_for(input_tokens)  # type: ignore[union-attr]
        return priced  # type: ignore[return-value]

    def _tiered_rate_for(self, model: str, provider: str | None, ts_ms: int, input_tokens: int,
                         tier: str) -> Rate | None:
        key = (model, provider, tier, ts_ms // MINUTE_MS)
        priced = self._by_tier_minute.get(key, _MISS)
        if priced is _MISS:
            priced, stable = self._price(model, provider, tier, ts_ms)
            if stable:
                if len(self._by_tier_minute) >= MAX_CACHED:
                    self._by_tier_minute.clear()
                self._by_tier_minute[key] = priced
        return priced.rate_for(input_tokens) if isinstance(priced, TieredRates) else priced

    def resolve(self, model: str, provider: str | None) -> Resolved | None:
        """The genai-prices model an event's model id means, or None (see pipeline/metering/models.py)."""
        key = (model, provider)
        resolved = self._models.get(key, _MISS)
        if resolved is _MISS:
            if len(self._models) >= MAX_CACHED:  # the snapshot caches lookups too: start afresh
                self._models.clear()
                self._snapshot = DataSnapshot(providers=data.providers, from_auto_update=False)
                self._resolver = ModelResolver(self._snapshot, self._aliases)
            resolved = self._models[key] = self._resolver.resolve(model, provider)
        return resolved  # type: ignore[return-value]

    def _price(self, model: str, provider: str | None, tier: str, ts_ms: int) -> tuple[Priced, bool]:
        """The sheet for one minute (judged at its start) and whether it holds for the whole minute."""
        minute_ms = ts_ms // MINUTE_MS * MINUTE_MS
        if not self._overrides and not self._multipliers:  # the common case: genai-prices alone
            return self._genai(model, provider, tier, minute_ms), True
        names = self._override_names(model, provider)
        start = self._override(names, provider, tier, minute_ms)
        end = self._override(names, provider, tier, minute_ms + MINUTE_MS - 1)
        if start != end:  # a schedule boundary inside the minute (a zone offset with seconds): this instant
            start = self._override(names, provider, tier, ts_ms)
        override = start
        stable = start == end
        multiplier = self._multiplier(names, provider, tier, minute_ms) if tier else None
        if multiplier is not None and override is not None and override.service_tier == tier:
            multiplier = None  # explicit tier prices are not scaled again
        if override is not None:
            priced: Priced = self._override_rate(override)
        else:
            priced = self._genai(model, provider, "" if multiplier is not None else tier, minute_ms)
        if multiplier is not None and priced is not None:
            scale, base = multiplier.multiplier, priced
            priced = _or_unpriced(lambda: base.scaled(scale, f" x{scale} {tier}"), f"{multiplier.label()} on {model}")
        return priced, stable

    def _override_names(self, model: str, provider: str | None) -> tuple[str, ...]:
        """The names overrides are looked up by: the model id, then its alias target."""
        target = self._aliases.target(model, provider)
        return (model.lower(),) if target is None else (model.lower(), target.model.lower())

    def _override(self, names: tuple[str, ...], provider: str | None, tier: str, at_ms: int) -> PriceOverride | None:
        wanted = provider.lower() if provider else None
        for name in names:
            for effective_ms, o in self._overrides.get(name, ()):
                if effective_ms <= at_ms and o.provider in (None, wanted) and o.service_tier in (None, tier or None) \
                        and (o.window is None or o.window.contains(at_ms)):
                    return o
        return None

    def _multiplier(self, names: tuple[str, ...], provider: str | None, tier: str, at_ms: int) -> PriceOverride | None:
        wanted = provider.lower() if provider else None
        for name in (*names, ANY_MODEL):
            for effective_ms, o in self._multipliers.get(name, ()):
                if effective_ms <= at_ms and o.provider in (None, wanted) and o.service_tier == tier \
                        and (o.window is None or o.window.contains(at_ms)):
                    return o
        return None

    def _override_rate(self, override: PriceOverride) -> Rate:
        rate = self._override_rates.get(id(override))
        if rate is None:
            prices = {PRICE_KEYS[key]: amount for key, amount in override.price_keys().items()}
            rate = self._override_rates[id(override)] = Rate(override.label(), prices)
        return rate

    def _genai(self, model: str, provider: str | None, tier: str, at_ms: int) -> Priced:
        resolved = self.resolve(model, provider)
        if resolved is None:
            return None
        info = resolved.model
        when = datetime.fromtimestamp(at_ms / 1000, UTC)
        standard = info.get_prices(when)
        period = 0 if isinstance(info.prices, ModelPrice) else next(
            i for i, c in enumerate(info.prices) if c.prices is standard)
        context = price_context(tier) if tier and resolved.own_model else None
        variants = _applied_variants(info, when, context) if context else ()
        minimum = GROQ_MINIMUM_SECONDS.get((resolved.provider.id, info.id), 0)
        key = (resolved.owner, info.id, period, variants, tier if variants else "", minimum)
        if key not in self._sheets:
            version, _ = _sheets(resolved.owner, info)[period]
            sheet = standard
            if variants:
                version += f" +{tier} v{','.join(map(str, variants))}"
                sheet = info.get_prices(when, context)
            self._sheets[key] = _or_unpriced(lambda: sheet_rates(version, sheet, minimum), version)
        return self._sheets[key]


def _or_unpriced(derive, version: str) -> Priced:
    """A sheet meterline cannot price exactly counts as unpriced (logged), never as an event's fault."""
    try:
        return derive()
    except PricingError as error:
        _log.error("%s counts as unpriced: %s (add an override to price it)", version, error)
        return None


def _precedence(o: PriceOverride) -> tuple:
    """Sort key (descending) of overrides: newest first; at equal dates tier-specific, then provider-specific,
    then scheduled entries before the more general ones; at equal rank the entry written later in the file."""
    return (o.effective_from, o.service_tier is not None, o.provider is not None, o.window is not None)


def _applied_variants(info: ModelInfo, when: datetime, context: Mapping[str, str]) -> tuple[int, ...]:
    """Indices of the price variants genai-prices applies for this context at this time (ModelInfo.get_prices)."""
    applied = []
    for index, variant in enumerate(info.price_variants or ()):
        if variant.constraint is not None and not variant.constraint.active(when):
            continue
        if all(context.get(key) == value for key, value in variant.when.items()):
            applied.append(index)
    return tuple(applied)
