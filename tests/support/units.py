"""Usage values for pricing tests, and genai-prices' own price of them (the truth meterline must equal).

Values are built from the leaf decomposition (pipeline/units.py): a random leaf per unit, each unit's value its
leaf plus its parts' leaves, so they always meet the contract. genai-prices' ``calc_price`` is given every
value explicitly (0 included), which is what meterline's "absent means 0" says.
"""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

import genai_prices
from genai_prices import Usage

from pipeline.units import IMPLICIT, TOP_LEVEL, closure, decomposition

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STORED = Decimal(1).scaleb(-24)
FIELD_OF = {unit: field for field, unit in TOP_LEVEL.items()}
# The service tier -> genai-prices price context rule, written out independently of meterline's code.
CONTEXTS = {"batch": {"processing": "batch", "service_tier": "batch"}, "fast": {"service_tier": "fast", "speed": "fast"}}


def consistent_values(rng: random.Random, units: set[str] | frozenset[str], input_tokens: int | None = None,
                      big: bool = True) -> dict[str, int]:
    """Values for the closure of ``units`` (plus input and output tokens) that meet the contract; input_tokens
    raised to ``input_tokens`` when that is larger."""
    plan = decomposition(frozenset(units) | {"input_tokens", "output_tokens"})
    sizes = [0, 1, rng.randint(2, 60), rng.randint(60, 5000)] + ([rng.randint(5000, 400_000)] if big else [])
    leaves = [rng.choice(sizes) for _ in plan.order]
    values = {name: leaves[i] + sum(leaves[j] for j in plan.parts_in[i]) for i, name in enumerate(plan.order)}
    if input_tokens is not None and input_tokens > values["input_tokens"]:
        values["input_tokens"] = input_tokens
    values.pop(IMPLICIT, None)
    return values


def event_fields(values: dict[str, int]) -> dict:
    """Contract fields for unit values: top-level token fields, the rest in ``usage``."""
    fields: dict = {"input_tokens": 0, "output_tokens": 0}
    usage = {}
    for name, value in values.items():
        if name in FIELD_OF:
            fields[FIELD_OF[name]] = value
        elif name != IMPLICIT:
            usage[name] = value
    if usage:
        fields["usage"] = usage
    return fields


def genai_price(values: dict[str, int], model: str, provider: str | None, ts_ms: int,
                service_tier: str = "") -> tuple[Decimal, Decimal] | None:
    """genai-prices' (total, output) price of one event, each rounded half-even to 1e-24 USD (a no-op unless a
    per-second price does not terminate); None when it knows no price."""
    context = CONTEXTS.get(service_tier, {"service_tier": service_tier}) if service_tier else None
    every = {name: values.get(name, 0) for name in closure(frozenset(values)) if name != IMPLICIT}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an unknown unit name would be ignored by genai-prices: fail instead
            calc = genai_prices.calc_price(Usage(**every), model, provider_id=provider,
                                           genai_request_timestamp=EPOCH + timedelta(milliseconds=ts_ms),
                                           price_context=context)
    except LookupError:
        return None
    wide = Context(prec=80)
    return (calc.total_price.quantize(STORED, rounding=ROUND_HALF_EVEN, context=wide),
            calc.output_price.quantize(STORED, rounding=ROUND_HALF_EVEN, context=wide))
