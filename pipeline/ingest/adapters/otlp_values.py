"""Reading OTLP JSON attribute lists (``[{"key": k, "value": AnyValue}]``) into plain Python values.

The OTLP JSON encoding writes 64-bit integers (``intValue``, ``*UnixNano``) as strings, and some SDKs send
whole numbers as ``doubleValue``; both are accepted as integers when they are whole.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pipeline.ingest.adapters.base import ItemError

Attributes = dict[str, Any]
_SCALARS = ("stringValue", "intValue", "doubleValue", "boolValue")
MAX_DIGITS = 19  # an int64 (nanosecond timestamps) has 19 digits; the contract bounds tokens far lower


def attributes_of(items: Any) -> Attributes:
    """Scalar attributes by key; arrays, maps and bytes are left out (no usage field needs them)."""
    attributes: Attributes = {}
    if not isinstance(items, list):
        return attributes
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        value = item.get("value")
        if isinstance(value, dict):
            for kind in _SCALARS:
                if kind in value:
                    attributes[item["key"]] = value[kind]
                    break
    return attributes


def int_of(value: Any, name: str) -> int | None:
    """A whole number from an int, a numeric string or a whole Decimal; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ItemError("invalid_field", f"`{name}` must be an integer")
    if isinstance(value, int):
        return value
    try:
        number = Decimal(value) if isinstance(value, (str, Decimal)) else None
    except InvalidOperation:
        number = None
    # The magnitude check comes first: converting a Decimal like 1e999999999 would take a billion digits.
    if number is None or not number.is_finite() or number.adjusted() > MAX_DIGITS \
            or number != number.to_integral_value():
        raise ItemError("invalid_field", f"`{name}` must be an integer")
    return int(number)
