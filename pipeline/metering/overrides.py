"""The operator's price overrides file (``METERLINE_PRICE_OVERRIDES``, TOML): prices, schedules, service tiers
and model aliases. docs/pricing.md describes it for operators; this module validates it.

* ``[[price]]`` entries price a model (optionally for one ``provider``) from ``effective_from``, in
  genai-prices' price keys (``input_mtok``, ``cache_write_1h_mtok``, ``web_searches_kcount``, ...; pipeline/units.py
  lists them) as decimal strings, never floats. ``request`` is USD per request. An entry may be limited to a
  weekly schedule (``days``, ``hours`` in an IANA ``timezone``) and to one ``service_tier``; a tier entry may
  instead give a ``multiplier`` of the price that applies without the tier (``model = "*"``: every model).
* ``[alias]`` maps a model id (any provider) to a genai-prices model or an override model; ``[alias.<provider>]``
  does so only for events of that provider.

Every problem of the file is reported at once, by entry and field (:class:`~pipeline.metering.money.PricingError`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.metering.models import NO_ALIASES, Aliases, Target, split_target
from pipeline.metering.money import EXACT, USD_DECIMALS, PricingError, is_whole_units, to_units
from pipeline.units import BY_NAME, HIERARCHY, UNITS, closure

PRICE_KEYS: Mapping[str, str] = {unit.price_key: unit.name for unit in UNITS}  # genai-prices price key -> unit
ANY_MODEL = "*"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    """A weekly schedule in an IANA zone: local wall-clock minutes [start, end) on ``days`` (0 = Monday; empty:
    every day). A window that wraps midnight (22:00-06:00) belongs to the day it starts on, so Friday
    22:00-06:00 covers Saturday 01:00. Local times are the zone's wall clock, DST included."""

    timezone: str = "UTC"
    days: frozenset[int] = frozenset()
    start_minute: int = 0
    end_minute: int = 1440

    def contains(self, at_ms: int) -> bool:
        local = datetime.fromtimestamp(at_ms // 1000, ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start_minute < self.end_minute:
            inside = self.start_minute <= minute < self.end_minute
        else:  # wraps midnight: the early hours belong to the previous day's window
            inside = minute >= self.start_minute or minute < self.end_minute
            if minute < self.end_minute:
                day = (day - 1) % 7
        return inside and (not self.days or day in self.days)

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days)) or "daily"
        start, end = divmod(self.start_minute, 60), divmod(self.end_minute, 60)
        return f"{days} {start[0]:02d}:{start[1]:02d}-{end[0]:02d}:{end[1]:02d} {self.timezone}"


@dataclass(frozen=True)
class PriceOverride:
    """One ``[[price]]`` entry. Amounts are USD per genai-prices' price unit (``input_mtok``: per 1M input
    tokens); ``request`` is USD per request. ``multiplier`` entries (a ``service_tier`` and no amounts) scale the
    price that applies without the tier."""

    model: str
    effective_from: datetime  # aware, on a whole UTC minute
    input_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    provider: str | None = None
    cache_read_mtok: Decimal | None = None  # None: cache reads cost input_mtok (genai-prices' rule)
    cache_write_mtok: Decimal | None = None
    request: Decimal = Decimal(0)
    prices: Mapping[str, Decimal] = field(default_factory=dict)  # any other genai-prices price key
    service_tier: str | None = None  # lower case
    multiplier: Decimal | None = None
    window: Window | None = None

    def __post_init__(self) -> None:
        if self.effective_from.tzinfo is None or self.effective_from.timestamp() % 60:
            raise PricingError(f"override {self.model}: effective_from must be aware and on a whole UTC minute")
        if self.multiplier is None and (self.input_mtok is None or self.output_mtok is None):
            raise PricingError(f"override {self.model}: input_mtok and output_mtok are required")

    def price_keys(self) -> dict[str, Decimal]:
        """Every amount of the entry by genai-prices price key (``request`` as ``requests_kcount``)."""
        keys = {"input_mtok": self.input_mtok, "output_mtok": self.output_mtok,
                "cache_read_mtok": self.cache_read_mtok, "cache_write_mtok": self.cache_write_mtok,
                **self.prices}
        if self.request:
            with localcontext(EXACT):
                keys["requests_kcount"] = self.request * 1000
        return {key: value for key, value in keys.items() if value is not None}

    @property
    def scope(self) -> str:
        return f"{self.provider}/{self.model}" if self.provider else self.model

    def label(self) -> str:
        """The override's part of a price version: ``override acme-eu/acme-large 2026-03-01T12:00Z``, plus
        ``tier=batch`` and the window when it has them."""
        when = self.effective_from.astimezone(UTC)
        stamp = when.date().isoformat() if (when.hour, when.minute) == (0, 0) else when.strftime("%Y-%m-%dT%H:%MZ")
        parts = ["override", self.scope, stamp]
        if self.service_tier:
            parts.append(f"tier={self.service_tier}")
        if self.window is not None:
            parts.append(f"[{self.window.describe()}]")
        return " ".join(parts)


@dataclass(frozen=True)
class PriceOverrides:
    """A parsed overrides file."""

    prices: tuple[PriceOverride, ...] = ()
    aliases: Aliases = NO_ALIASES

    def models(self) -> set[str]:
        return {o.model.lower() for o in self.prices}


NONE = PriceOverrides()

_MONEY_FIELDS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "request")
_SCHEDULE_FIELDS = ("timezone", "days", "hours")
_ALL_FIELDS = ("model", "provider", "effective_from", "service_tier", "multiplier", *_SCHEDULE_FIELDS,
               *_MONEY_FIELDS, *PRICE_KEYS)


def load_overrides(path: Path) -> PriceOverrides:
    """Parse and validate an overrides file; one PricingError lists every bad entry and field."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PricingError(f"{path}: cannot read price overrides: {error}") from error
    try:
        return parse_overrides(document)
    except PricingError as error:
        raise PricingError(f"{path}: invalid price overrides:\n  {error}") from None


def parse_overrides(document: dict[str, Any]) -> PriceOverrides:
    """The overrides of a parsed TOML document; PricingError lists every problem, one per line."""
    document = dict(document)
    entries = document.pop("price", [])
    alias_table = document.pop("alias", {})
    errors = [f"unknown top-level key {key!r} (expected [[price]] entries and an [alias] table)" for key in document]
    if not isinstance(entries, list):
        entries, errors = [], [*errors, "'price' must be an array of tables ([[price]])"]
    overrides: list[PriceOverride] = []
    seen: dict[tuple, int] = {}
    for index, entry in enumerate(entries):
        problems: list[str] = []
        override = _parse_override(entry, problems)
        errors += [f"price[{index}]: {problem}" for problem in problems]
        if override is None:
            continue
        key = (override.model.lower(), override.provider and override.provider.lower(), override.effective_from,
               override.service_tier, override.window)
        if key in seen:  # two prices for the same instant: which one wins would be arbitrary
            errors.append(f"price[{index}]: same model, provider, effective_from, service_tier and schedule as "
                          f"price[{seen[key]}]")
        seen.setdefault(key, index)
        overrides.append(override)
    aliases = _parse_aliases(alias_table, errors)
    if errors:
        raise PricingError("\n  ".join(errors))
    return PriceOverrides(tuple(overrides), aliases)


def _parse_override(entry: object, problems: list[str]) -> PriceOverride | None:
    if not isinstance(entry, dict):
        problems.append("must be a table")
        return None
    problems += [f"unknown key {key!r}" for key in entry if key not in _ALL_FIELDS]
    fields: dict[str, Any] = {}
    for key in ("model", "provider"):
        if key in entry:
            fields[key] = _text(key, entry[key], problems)
    if "effective_from" in entry:
        fields["effective_from"] = _instant(entry["effective_from"], problems)
    if "service_tier" in entry:
        tier = _text("service_tier", entry["service_tier"], problems)
        fields["service_tier"] = tier.lower() if tier else tier
    for key in _MONEY_FIELDS:
        if key in entry:
            fields[key] = _money(key, entry[key], problems)
    extra = {key: _money(key, entry[key], problems) for key in entry if key in PRICE_KEYS and key not in _MONEY_FIELDS}
    if "multiplier" in entry:
        fields["multiplier"] = _multiplier(entry["multiplier"], problems)
    if any(key in entry for key in _SCHEDULE_FIELDS):
        fields["window"] = _window(entry, problems)
    problems += [f"missing required field {key!r}" for key in ("model", "effective_from") if key not in entry]
    _check_kind(entry, fields, extra, problems)
    if problems:
        return None
    if extra:
        fields["prices"] = extra
    return PriceOverride(**fields)


def _check_kind(entry: dict, fields: dict, extra: dict, problems: list[str]) -> None:
    """An entry is either a price (input_mtok and output_mtok, plus any other keys) or a tier multiplier."""
    amounts = [key for key in entry if key in _MONEY_FIELDS or key in extra]
    if "multiplier" in entry:
        if "service_tier" not in entry:
            problems.append("a 'multiplier' needs a 'service_tier' (it scales the price without the tier)")
        if amounts:
            problems.append(f"give either a 'multiplier' or prices, not both (found {', '.join(amounts)})")
        return
    problems += [f"missing required field {key!r}" for key in ("input_mtok", "output_mtok") if key not in entry]
    if entry.get("model") == ANY_MODEL:
        problems.append("model \"*\" is only for service-tier multipliers")
    priced = {PRICE_KEYS[key] for key in amounts if key in PRICE_KEYS} | {"input_tokens", "output_tokens"}
    if entry.get("request"):
        priced.add("requests")
    missing = closure(priced) - priced
    if missing:
        needed = ", ".join(sorted(BY_NAME[name].price_key for name in missing))
        problems.append(f"pricing a part needs its wholes and overlaps priced too (genai-prices' rule): add {needed}")


def _parse_aliases(table: object, errors: list[str]) -> Aliases:
    if not isinstance(table, dict):
        errors.append("'alias' must be a table ([alias])")
        return NO_ALIASES
    any_provider: dict[str, Target] = {}
    scoped: dict[str, dict[str, Target]] = {}
    for key, value in table.items():
        if isinstance(value, dict):  # [alias.<provider>]
            scoped[key.lower()] = {model.lower(): target for model, text in value.items()
                                   if (target := _target(f"alias.{key}.{model}", text, errors)) is not None}
        elif (target := _target(f"alias.{key}", value, errors)) is not None:
            any_provider[key.lower()] = target
    return Aliases(any_provider, scoped)


def _target(where: str, value: object, errors: list[str]) -> Target | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(f"{where}: the target must be a model id such as \"openai/gpt-4o\"")
        return None
    return split_target(value.strip())


def _text(name: str, value: object, problems: list[str]) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    problems.append(f"field {name!r}: must be a non-empty string")
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


def _decimal(name: str, value: object, problems: list[str]) -> Decimal | None:
    if isinstance(value, float):
        problems.append(f"field {name!r}: TOML floats are not exact; write a string, e.g. \"3.00\"")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        problems.append(f"field {name!r}: must be a string (e.g. \"3.00\") or an integer")
        return None
    with localcontext(Context(traps=[])):  # a malformed number becomes NaN instead of raising
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    if not amount.is_finite() or amount < 0:
        problems.append(f"field {name!r}: {value!r} is not a non-negative decimal amount")
        return None
    return amount


def _money(name: str, value: object, problems: list[str]) -> Decimal | None:
    amount = _decimal(name, value, problems)
    if amount is None:
        return None
    unit = BY_NAME["requests"] if name == "request" else BY_NAME[PRICE_KEYS[name]]
    per = 1 if name == "request" else unit.per
    try:  # the price of ONE unit must be a whole number of 1e-24 USD (per-second prices may round per event)
        exact = divmod(to_units(amount), per)[1] == 0
    except PricingError:
        exact = False
    if not exact and (unit.name not in _MAY_ROUND or not is_whole_units(amount)):
        problems.append(f"field {name!r}: {value!r} is not exact in USD per {unit.counts} at {USD_DECIMALS} decimal "
                        "places")
        return None
    return amount


# Units whose per-unit price may need rounding (priced event by event, see pricing.Rate.price_apart): seconds
# priced per hour. Token and request prices must be exact.
_MAY_ROUND = frozenset(name for name in HIERARCHY.parts if BY_NAME[name].counts == "second")


def _multiplier(value: object, problems: list[str]) -> Decimal | None:
    amount = _decimal("multiplier", value, problems)
    if amount is not None and amount.as_tuple().exponent < -USD_DECIMALS:  # type: ignore[operator]
        problems.append("field 'multiplier': at most 24 decimal places")
        return None
    return amount


def _window(entry: dict, problems: list[str]) -> Window | None:
    ok = True
    zone = entry.get("timezone", "UTC")
    try:
        if not isinstance(zone, str):
            raise ValueError
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"field 'timezone': {zone!r} is not an IANA time zone (e.g. Europe/Berlin)")
        ok = False
    days = entry.get("days", [])
    if not isinstance(days, list) or not days or any(not isinstance(d, str) or d.lower()[:3] not in DAYS for d in days):
        if "days" in entry:
            problems.append("field 'days': a non-empty list of mon, tue, wed, thu, fri, sat, sun")
            ok = False
        days = []
    start, end = 0, 1440
    if "hours" in entry:
        match = _HOURS.match(entry["hours"]) if isinstance(entry["hours"], str) else None
        start = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
        end = int(match.group(3)) * 60 + int(match.group(4)) if match else -1
        if match is None or end > 1440 or start == end:
            problems.append("field 'hours': local \"HH:MM-HH:MM\" (e.g. \"22:00-06:00\"; end 24:00 allowed; start != end)")
            ok = False
    return Window(zone, frozenset(DAYS.index(d.lower()[:3]) for d in days), start, end) if ok else None
