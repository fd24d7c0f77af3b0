"""Exact money: USD as integer units of 1e-24 (ClickHouse ``Decimal(38, 24)``), never a float.

Every price meterline applies is a whole number of these units per unit of usage (a token, a search, a
request), checked when the price is loaded, so costs are plain integer arithmetic; the few prices that are not
(per-second audio prices such as $0.111 per hour: 0.111 / 3600 does not terminate) are rounded half-even per
event and per unit, see ``pricing.Rate.price_apart``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext

# Inexact is trapped: any rounding raises instead of silently changing money.
EXACT = Context(prec=60, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
USD_DECIMALS = 24  # ClickHouse Decimal(38, 24): 14 integer digits, 24 decimals
USD_SCALE = Decimal(1).scaleb(-USD_DECIMALS)
UNITS_PER_USD = 10**USD_DECIMALS


class PricingError(ValueError):
    """Bad price configuration, or money that cannot be represented exactly."""


def to_units(amount: Decimal) -> int:
    """``amount`` USD in units of 1e-24 USD, or PricingError when it is not a whole number of them."""
    with localcontext(EXACT):
        try:
            return int(amount.scaleb(USD_DECIMALS).to_integral_exact())
        except (Inexact, InvalidOperation) as error:
            raise PricingError(f"{amount} USD is not a whole number of 1e-{USD_DECIMALS} USD") from error


def is_whole_units(amount: Decimal) -> bool:
    """Whether ``amount`` USD is a whole number of 1e-24 USD."""
    try:
        to_units(amount)
    except PricingError:
        return False
    return True


def divide_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-even to an integer (exact integer arithmetic)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def usd_text(units: int) -> str:
    """Exact decimal text of ``units`` x 1e-24 USD, e.g. 1500000000000000000000000 -> '1.500000000000000000000000'."""
    sign, units = ("-", -units) if units < 0 else ("", units)
    whole, fraction = divmod(units, UNITS_PER_USD)
    return f"{sign}{whole}.{fraction:0{USD_DECIMALS}d}"


def units_text(units: int) -> str:
    """``units`` x 1e-24 USD as ClickHouse parses a Decimal exactly, in the cheapest form: ``'1500e-24'``."""
    return f"{units}e-24" if units else "0"


def quantize_usd(amount: Decimal) -> Decimal:
    """``amount`` with exponent -24 (ClickHouse Decimal(38, 24)); raises rather than round."""
    try:
        quantized = amount.quantize(USD_SCALE, context=EXACT)
    except (Inexact, InvalidOperation) as error:
        raise PricingError(f"{amount} USD does not fit Decimal(38, 24) exactly") from error
    if len(quantized.as_tuple().digits) > 38:
        raise PricingError(f"{amount} USD does not fit Decimal(38, 24)")
    return quantized


def round_usd(amount: Decimal) -> Decimal:
    """``amount`` rounded half-even to 1e-24 USD (what :meth:`pricing.Rate.price_apart` does per event)."""
    return amount.quantize(USD_SCALE, rounding=ROUND_HALF_EVEN, context=Context(prec=80))
