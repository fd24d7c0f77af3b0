"""Exact, fast pricing of usage events, with linear coefficients derived from genai-prices itself.

Within one price sheet (one model, one conditional price period) and one tier, genai-prices is linear in
the token counts, so a :class:`Rate` prices the *summed* counts of any number of events exactly. Each
Rate is derived by probing ``ModelPrice.calc_price`` with unit usages, then checked against one mixed
usage on the original sheet. Only the bundled snapshot is used: live price updates are never enabled.

Lookup (:meth:`PriceBook.rate_for`):

* Overrides (TOML, see :func:`load_overrides`) win: the newest entry for the model (and the provider,
  when the entry names one) whose ``effective_from`` is at or before the event.
* Otherwise genai-prices: a provider it knows prices the event with that provider's price (or the
  provider's own fallback providers, e.g. azure -> openai); a provider it does not know is ignored and
  the model is matched alone (genai-prices infers the provider from the model name); no match -> None,
  which the caller counts as unpriced. A known provider that has no price for the model also gives None.
* genai-prices puts per-request fees in ``total_price`` only; here they go to the input side, so
  input + output always equals genai-prices' ``total_price``.
* Not applied, as events carry nothing to select or count them: genai-prices price variants (service
  tier, batch, ...) and non-token prices (web searches, audio hours, pages). Counts are trusted to meet
  the event contract (cache reads + writes <= input, reasoning <= output); genai-prices would raise.
* Money is stored as ClickHouse Decimal(38, 24). genai-prices holds float artifacts (0.18000000000000002
  USD/MTok) and truncated repeating decimals (0.041666666666666664 USD/MTok) that need up to 24 decimal
  places per token; a sheet needing more would count as unpriced unless an override prices the model.

Rate versions: ``genai-prices <version> <provider>/<model>``, plus `` p<i> <constraint>`` for the i-th
conditional price (``from 2026-03-13``, ``00:30-16:30Z``) and `` in<=N`` / `` in>N`` for tiers; an
override is ``override [<provider>/]<model> <effective_from>``.

Constraint boundaries in the snapshot (start dates, times of day) all fall on whole UTC minutes (a test
proves it), so the chosen sheet is cached per (model, provider, UTC minute).
"""

from __future__ import annotations

import logging
import tomllib
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from pathlib import Path
from typing import Any, NamedTuple

import genai_prices
from genai_prices import Usage, data
from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id
from genai_prices.types import ModelInfo, ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint

from pipeline.clock import MINUTE_MS
from pipeline.measures import Counts

# Inexact is trapped: any rounding raises instead of silently changing money.
EXACT = Context(prec=50, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
USD_DECIMALS = 24  # ClickHouse Decimal(38, 24): 14 integer digits, 24 decimals
USD_SCALE = Decimal(1).scaleb(-USD_DECIMALS)
MAX_CACHED = 100_000  # bounds memory if model/provider strings are high-cardinality
_MISS = object()
_log = logging.getLogger(__name__)


class PricingError(ValueError):
    """Bad price configuration, or money that cannot be represented exactly."""


def _to_units(amount: Decimal) -> int:
    """``amount`` USD in units of 1e-24 USD, or PricingError when it is not a whole number of them."""
    with localcontext(EXACT):
        try:
            units = amount.scaleb(USD_DECIMALS)
            return int(units.to_integral_exact())
        except (Inexact, InvalidOperation) as error:
            raise PricingError(f"{amount} USD is not a whole number of 1e-{USD_DECIMALS} USD") from error


def usd_text(units: int) -> str:
    """Exact decimal text of ``units`` x 1e-24 USD, e.g. 1500000000000000000000000 -> '1.500000000000000000000000'."""
    sign, units = ("-", -units) if units < 0 else ("", units)
    whole, fraction = divmod(units, 10**USD_DECIMALS)
    return f"{sign}{whole}.{fraction:0{USD_DECIMALS}d}"


def quantize_usd(amount: Decimal) -> Decimal:
    """``amount`` with exponent -24 (ClickHouse Decimal(38, 24)); raises rather than round."""
    try:
        quantized = amount.quantize(USD_SCALE, context=EXACT)
    except (Inexact, InvalidOperation) as error:
        raise PricingError(f"{amount} USD does not fit Decimal(38, 24) exactly") from error
    if len(quantized.as_tuple().digits) > 38:
        raise PricingError(f"{amount} USD does not fit Decimal(38, 24)")
    return quantized


@dataclass(frozen=True, slots=True)
class Cost:
    """The exact cost of summed usage, in integer units of 1e-24 USD (ClickHouse ``Decimal(38, 24)``);
    :func:`usd_text` turns units into exact decimal text."""

    input_units: int
    output_units: int

    @property
    def total_units(self) -> int:
        return self.input_units + self.output_units


@dataclass(frozen=True, slots=True)
class Rate:
    """A linear price sheet: cost = sum(count * coefficient). Fixed model, price period and tier.

    Coefficients are USD per token of each kind (or per request), split as genai-prices splits them.
    """

    version: str
    input_token: Decimal  # per input token that is neither a cache read nor a cache write
    cache_read_token: Decimal
    cache_write_token: Decimal
    input_request: Decimal  # per request; includes genai-prices' direction-less request fees
    output_token: Decimal  # per output token that is not a reasoning token
    reasoning_token: Decimal
    output_request: Decimal
    _units: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())

    def cost(self, requests: int, input_tokens: int, cache_read_tokens: int, cache_write_tokens: int,
             output_tokens: int, reasoning_tokens: int) -> tuple[Decimal, Decimal]:
        """(input_cost, output_cost) in USD, exact, for the summed counts of `requests` events."""
        input_units, output_units = self.cost_units(requests, input_tokens, cache_read_tokens, cache_write_tokens,
                                                    output_tokens, reasoning_tokens)
        return Decimal(input_units).scaleb(-USD_DECIMALS), Decimal(output_units).scaleb(-USD_DECIMALS)

    def cost_units(self, requests: int, input_tokens: int, cache_read_tokens: int, cache_write_tokens: int,
                   output_tokens: int, reasoning_tokens: int) -> tuple[int, int]:
        """The same cost in integer units of 1e-24 USD: plain int arithmetic, several times faster than
        Decimal, and exact because every coefficient is a whole number of units (checked on creation)."""
        i, cr, cw, ireq, o, r, oreq = self._units
        return ((input_tokens - cache_read_tokens - cache_write_tokens) * i + cache_read_tokens * cr
                + cache_write_tokens * cw + requests * ireq,
                (output_tokens - reasoning_tokens) * o + reasoning_tokens * r + requests * oreq)

    def price(self, counts: Counts) -> Cost:
        """The exact cost of a group's summed counts (all priced with this rate)."""
        return Cost(*self.cost_units(counts.requests, counts.input_tokens, counts.cache_read_tokens,
                                     counts.cache_write_tokens, counts.output_tokens, counts.reasoning_tokens))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_units", tuple(_to_units(c) for c in self.coefficients()))

    def coefficients(self) -> tuple[Decimal, ...]:
        return (self.input_token, self.cache_read_token, self.cache_write_token, self.input_request,
                self.output_token, self.reasoning_token, self.output_request)


class TieredRates(NamedTuple):
    """The Rates of one tiered sheet: rates[i] for input_tokens > starts[i-1] and <= starts[i]."""

    starts: tuple[int, ...]
    rates: tuple[Rate | None, ...]

    def rate_for(self, input_tokens: int) -> Rate | None:
        return self.rates[bisect_left(self.starts, input_tokens)]


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """A negotiated or private price; amounts in USD per 1M tokens (``request``: USD per request)."""

    model: str
    effective_from: datetime  # aware, on a whole UTC minute
    input_mtok: Decimal
    output_mtok: Decimal
    provider: str | None = None
    cache_read_mtok: Decimal | None = None  # None: same as input_mtok
    cache_write_mtok: Decimal | None = None
    request: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.effective_from.tzinfo is None or self.effective_from.timestamp() % 60:
            raise PricingError(f"override {self.model}: effective_from must be aware and on a whole UTC minute")

    def rate(self) -> Rate:
        cache_read = self.input_mtok if self.cache_read_mtok is None else self.cache_read_mtok
        cache_write = self.input_mtok if self.cache_write_mtok is None else self.cache_write_mtok
        with localcontext(EXACT):
            per_token = [m / 1_000_000 for m in (self.input_mtok, cache_read, cache_write, self.output_mtok)]
        when = self.effective_from.astimezone(UTC)
        stamp = when.date().isoformat() if when.time() == time(0) else when.strftime("%Y-%m-%dT%H:%MZ")
        scope = f"{self.provider}/{self.model}" if self.provider else self.model
        return Rate(f"override {scope} {stamp}", per_token[0], per_token[1], per_token[2], self.request,
                    per_token[3], per_token[3], Decimal(0))


_MONEY_FIELDS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "request")
_REQUIRED = ("model", "effective_from", "input_mtok", "output_mtok")
_ALL_FIELDS = ("model", "provider", "effective_from", *_MONEY_FIELDS)


def load_overrides(path: Path) -> list[PriceOverride]:
    """Parse and validate a price overrides file; one PricingError lists every bad entry and field."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PricingError(f"{path}: cannot read price overrides: {error}") from error
    entries = document.pop("price", [])
    errors = [f"unknown top-level key {key!r} (expected [[price]] entries)" for key in document]
    if not isinstance(entries, list):
        entries, errors = [], [*errors, "'price' must be an array of tables ([[price]])"]
    overrides: list[PriceOverride] = []
    seen: dict[tuple[str, str | None, datetime], int] = {}
    for index, entry in enumerate(entries):
        problems: list[str] = []
        override = _parse_override(entry, problems)
        errors += [f"price[{index}]: {problem}" for problem in problems]
        if override is None:
            continue
        key = (override.model.lower(), override.provider and override.provider.lower(), override.effective_from)
        if key in seen:  # two prices for the same instant: which one wins would be arbitrary
            errors.append(f"price[{index}]: same model, provider and effective_from as price[{seen[key]}]")
        seen.setdefault(key, index)
        overrides.append(override)
    if errors:
        raise PricingError(f"{path}: invalid price overrides:\n  " + "\n  ".join(errors))
    return overrides


def _parse_override(entry: object, problems: list[str]) -> PriceOverride | None:
    if not isinstance(entry, dict):
        problems.append("must be a table")
        return None
    problems += [f"unknown key {key!r}" for key in entry if key not in _ALL_FIELDS]
    problems += [f"missing required field {key!r}" for key in _REQUIRED if key not in entry]
    fields: dict[str, Any] = {}
    for key in ("model", "provider"):
        if key in entry:
            fields[key] = _text(key, entry[key], problems)
    if "effective_from" in entry:
        fields["effective_from"] = _instant(entry["effective_from"], problems)
    for key in _MONEY_FIELDS:
        if key in entry:
            fields[key] = _money(key, entry[key], problems)
    return None if problems else PriceOverride(**fields)


def _text(field: str, value: object, problems: list[str]) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    problems.append(f"field {field!r}: must be a non-empty string")
    return None


def _instant(value: object, problems: list[str]) -> datetime | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            problems.append("field 'effective_from': a datetime needs an offset, e.g. 2026-01-01T00:00:00Z")
            return None
        instant = value.astimezone(UTC)
    elif isinstance(value, date):
        instant = datetime(value.year, value.month, value.day, tzinfo=UTC)
    else:
        problems.append("field 'effective_from': must be a TOML date or offset datetime")
        return None
    if instant.second or instant.microsecond:  # the rate cache is per UTC minute
        problems.append("field 'effective_from': must fall on a whole UTC minute")
        return None
    return instant


def _money(field: str, value: object, problems: list[str]) -> Decimal | None:
    if isinstance(value, float):
        problems.append(f"field {field!r}: TOML floats are not exact; write a string, e.g. \"3.00\"")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(f"field {field!r}: must be a string (e.g. \"3.00\") or an integer")
        return None
    with localcontext(Context(traps=[])):  # a malformed number becomes NaN instead of raising
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    if not amount.is_finite() or amount < 0:
        problems.append(f"field {field!r}: {value!r} is not a non-negative decimal amount")
        return None
    unit = "request" if field == "request" else "token"
    try:  # per-token prices must be exact at the stored scale too, or costs could not be stored exactly
        with localcontext(EXACT):
            quantize_usd(amount if unit == "request" else amount / 1_000_000)
    except (PricingError, ArithmeticError):
        problems.append(f"field {field!r}: {value!r} is not exact in USD per {unit} at {USD_DECIMALS} decimal places")
        return None
    return amount


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


def _sheet_rates(version: str, sheet: ModelPrice) -> Rate | TieredRates:
    starts = sorted({tier.start for price in vars(sheet).values() if isinstance(price, TieredPrices)
                     for tier in price.tiers})
    if not starts:
        return _derive_rate(version, sheet, sheet, 10)
    bands = [(f" in<={starts[0]}", min(10, starts[0]))] + [(f" in>{start}", start + 1) for start in starts]
    return TieredRates(tuple(starts), tuple(
        _derive_rate(version + suffix, _flatten(sheet, inside), sheet, inside) for suffix, inside in bands))


def _flatten(sheet: ModelPrice, input_tokens: int) -> ModelPrice:
    """The sheet with each TieredPrices replaced by the tier genai-prices picks for ``input_tokens``."""
    def pick(price: Any) -> Any:
        if not isinstance(price, TieredPrices):
            return price
        return next((t.price for t in reversed(price.tiers) if input_tokens > t.start), price.base)
    return ModelPrice(**{key: pick(price) for key, price in vars(sheet).items()})


def _derive_rate(version: str, flat: ModelPrice, original: ModelPrice, inside: int) -> Rate:
    """Probe the flat sheet with unit usages; verify on the original sheet with a usage in the band."""
    with localcontext(EXACT):
        zero = flat.calc_price(Usage())
        def extra(side: str, **tokens: int) -> Decimal:
            return flat.calc_price(Usage(**tokens))[side] - zero[side]  # type: ignore[literal-required]
        rate = Rate(version, extra("input_price", input_tokens=1),
                    extra("input_price", input_tokens=1, cache_read_tokens=1),
                    extra("input_price", input_tokens=1, cache_write_tokens=1),
                    zero["total_price"] - zero["output_price"], extra("output_price", output_tokens=1),
                    extra("output_price", output_tokens=1, output_reasoning_tokens=1), zero["output_price"])
        counts = (inside, inside // 3, inside // 4, 9, 4)
        expected = original.calc_price(Usage(
            input_tokens=counts[0], cache_read_tokens=counts[1], cache_write_tokens=counts[2],
            output_tokens=counts[3], output_reasoning_tokens=counts[4]))
    if rate.cost(1, *counts) != (expected["total_price"] - expected["output_price"], expected["output_price"]):
        raise PricingError(f"{version}: genai-prices is not linear as assumed; pricing would be inexact")
    return rate


def snapshot_rates() -> Iterator[Rate]:
    """Every Rate derivable from the bundled snapshot (all providers, models, periods and tiers)."""
    for provider in data.providers:
        for model in provider.models:
            for version, sheet in _sheets(provider.id, model):
                priced = _sheet_rates(version, sheet)
                yield from priced.rates if isinstance(priced, TieredRates) else (priced,)


def _is_exact_at(amount: Decimal, places: int) -> bool:
    with localcontext(EXACT):
        return amount.normalize().as_tuple().exponent >= -places  # type: ignore[operator]


def _owner_id(providers: Sequence[Any], model: ModelInfo) -> str:
    return next(p.id for p in providers if any(m is model for m in p.models))


class PriceBook:
    """Prices events: overrides first, then the bundled genai-prices snapshot.

    Each price sheet and tier is derived once into one Rate object, so equal inputs return the same Rate.
    """

    def __init__(self, overrides: Sequence[PriceOverride] = (), *, exact_decimals: int | None = USD_DECIMALS) -> None:
        """``exact_decimals``: a genai-prices sheet whose coefficients need more decimal places counts as
        unpriced, as its costs could not be stored (ClickHouse Decimal(38, 24)) without rounding; None
        keeps every sheet."""
        self._exact_decimals = exact_decimals
        self._snapshot = DataSnapshot(providers=data.providers, from_auto_update=False)
        # model (lower case) -> [(effective_from ms, provider or None, Rate)], newest first; on a tie the
        # provider-scoped entry wins, being the more specific
        self._overrides: dict[str, list[tuple[int, str | None, Rate]]] = {}
        for o in sorted(overrides, key=lambda o: (o.effective_from, o.provider is not None), reverse=True):
            entry = (int(o.effective_from.timestamp() * 1000), o.provider and o.provider.lower(), o.rate())
            self._overrides.setdefault(o.model.lower(), []).append(entry)
        self._by_minute: dict[tuple[str, str | None, int], Rate | TieredRates | None] = {}
        self._models: dict[tuple[str, str | None], tuple[str, ModelInfo] | None] = {}
        self._sheets: dict[tuple[str, str, int], Rate | TieredRates | None] = {}

    @classmethod
    def from_file(cls, path: Path | None) -> PriceBook:
        return cls(load_overrides(path) if path is not None else ())

    def rate_for(self, model: str, provider: str | None, ts_ms: int, input_tokens: int) -> Rate | None:
        """The rate that prices one event of this model at its own timestamp (epoch ms, UTC).
        None when the model has no price (the caller counts it as unpriced, never drops it)."""
        minute = ts_ms // MINUTE_MS
        priced = self._by_minute.get((model, provider, minute), _MISS)
        if priced is _MISS:
            priced = self._price_minute(model, provider, minute)
        if priced.__class__ is TieredRates:
            return priced.rate_for(input_tokens)  # type: ignore[union-attr]
        return priced  # type: ignore[return-value]

    def _price_minute(self, model: str, provider: str | None, minute: int) -> Rate | TieredRates | None:
        if len(self._by_minute) >= MAX_CACHED:
            self._by_minute.clear()
        priced = self._override(model, provider, minute * MINUTE_MS) or self._genai(model, provider, minute)
        self._by_minute[(model, provider, minute)] = priced
        return priced

    def _override(self, model: str, provider: str | None, at_ms: int) -> Rate | None:
        wanted = provider.lower() if provider else None
        for effective_ms, scope, rate in self._overrides.get(model.lower(), ()):
            if effective_ms <= at_ms and scope in (None, wanted):
                return rate
        return None

    def _genai(self, model: str, provider: str | None, minute: int) -> Rate | TieredRates | None:
        resolved = self._models.get((model, provider), _MISS)
        if resolved is _MISS:
            if len(self._models) >= MAX_CACHED:  # the snapshot caches lookups too: start afresh
                self._models.clear()
                self._snapshot = DataSnapshot(providers=data.providers, from_auto_update=False)
            resolved = self._models[(model, provider)] = self._resolve(model, provider)
        if resolved is None:
            return None
        owner, info = resolved  # type: ignore[misc]
        chosen = info.get_prices(datetime.fromtimestamp(minute * 60, UTC))
        period = 0 if isinstance(info.prices, ModelPrice) else next(
            i for i, c in enumerate(info.prices) if c.prices is chosen)
        key = (owner, info.id, period)
        if key not in self._sheets:
            self._sheets[key] = self._storable(_sheet_rates(*_sheets(owner, info)[period]))
        return self._sheets[key]

    def _storable(self, priced: Rate | TieredRates | None) -> Rate | TieredRates | None:
        if isinstance(priced, TieredRates):
            return TieredRates(priced.starts, tuple(map(self._storable, priced.rates)))  # type: ignore[arg-type]
        if priced is None or self._exact_decimals is None or all(
                _is_exact_at(c, self._exact_decimals) for c in priced.coefficients()):
            return priced
        _log.warning("%s: a price needs more than %d decimal places; counted as unpriced (add an override)",
                     priced.version, self._exact_decimals)
        return None

    def _resolve(self, model: str, provider: str | None) -> tuple[str, ModelInfo] | None:
        if not provider:
            attempts: list[str | None] = [None]
        elif find_provider_by_id(self._snapshot.providers, provider):
            attempts = [provider]
        else:  # genai-prices knows nothing of this provider: match the model alone
            attempts = [provider, None]  # provider first: genai-prices handles "litellm" + "openai/gpt-4o"
        for provider_id in attempts:
            try:
                _, info = self._snapshot.find_provider_model(model, None, provider_id, None)
                return _owner_id(self._snapshot.providers, info), info
            except LookupError:
                continue
        return None
