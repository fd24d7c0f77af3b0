"""What a budget is, and what is refused: one place, so the CLI, the API and the store say the same thing.

A budget is identified by (scope, scope_id, period): a key, org or project may have one daily, one weekly and
one monthly budget at the same time. Its amount is USD as an exact decimal (never a float: the CLI and the API
take decimal strings), stored as ClickHouse Decimal(38, 24); thresholds are whole percents of the amount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable

from pipeline.usage.ranges import SCOPES, QueryError, parse_zone

PERIODS = ("day", "week", "month")  # weeks start on Monday (ISO 8601)
PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly"}
DEFAULT_PERIOD = "month"
DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_THRESHOLD = 1000  # percent; above 100 warns about overspending (e.g. 150)
AMOUNT_DECIMALS = 24  # ClickHouse Decimal(38, 24): 24 decimals ...
MAX_AMOUNT = Decimal(10) ** 14  # ... and 14 integer digits
MAX_SCOPE_ID = 256
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,14}(\.[0-9]{1,24})?")  # ASCII digits only (\d matches any script)


class BudgetError(QueryError):
    """A budget that cannot be stored as given (a QueryError: the API answers 400, the CLI exits 2)."""


@dataclass(frozen=True, order=True)
class BudgetKey:
    """The identity of a budget."""

    scope: str  # key | org | project
    scope_id: str
    period: str  # day | week | month


@dataclass(frozen=True)
class Budget:
    """One budget as stored. ``thresholds``: ascending whole percents of ``amount_usd``."""

    scope: str
    scope_id: str
    period: str
    amount_usd: Decimal
    tz: str
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    updated_at: datetime | None = None  # UTC; set by the store

    @property
    def key(self) -> BudgetKey:
        return BudgetKey(self.scope, self.scope_id, self.period)


def make_budget(scope: str, scope_id: str, period: str, amount: str, tz: str = "UTC",
                thresholds: Iterable[int] | str | None = None) -> Budget:
    """A validated budget. ``amount``: a plain decimal string ("100", "12.50"); ``thresholds``: percents as
    integers or a comma-separated string ("50,80,100"), default 50, 80, 100. Raises BudgetError."""
    check_scope(scope, scope_id)
    check_period(period)
    try:
        parse_zone(tz)
    except QueryError as error:
        raise BudgetError(error.error, error.detail) from None
    return Budget(scope, scope_id, period, parse_amount(amount), tz, parse_thresholds(thresholds))


def check_scope(scope: str, scope_id: str) -> None:
    if scope not in SCOPES:
        raise BudgetError("unknown scope", f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not isinstance(scope_id, str) or not 1 <= len(scope_id) <= MAX_SCOPE_ID:
        raise BudgetError(f"bad {scope} id", f"the {scope} id must be 1 to {MAX_SCOPE_ID} characters")


def check_period(period: str) -> None:
    if period not in PERIODS:
        raise BudgetError("unknown period", f"period must be one of {', '.join(PERIODS)}, got {period!r}")


def parse_amount(text: object) -> Decimal:
    """USD from a plain decimal string: more than 0, at most 14 integer digits and 24 decimals (what
    Decimal(38, 24) holds exactly). Numbers are refused: a JSON or float value may already be inexact."""
    if not isinstance(text, str):
        raise BudgetError("bad amount", f"the amount must be a decimal string such as \"100.00\", got "
                                        f"{type(text).__name__} {text!r} (a number may already be a rounded float)")
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise BudgetError("bad amount", f"{text!r} is not a plain decimal amount in USD (e.g. 100 or 12.50; at "
                                        "most 14 digits before the point and 24 after)")
    amount = Decimal(text)
    if amount <= 0:
        raise BudgetError("bad amount", f"the amount must be more than 0, got {text!r}")
    return amount


def parse_thresholds(value: Iterable[int] | str | None) -> tuple[int, ...]:
    """Distinct whole percents 1..1000, sorted; None or empty text: the default 50, 80, 100."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_THRESHOLDS
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
    percents = []
    for item in items:
        number = _percent(item)
        if number is None or not 1 <= number <= MAX_THRESHOLD:
            raise BudgetError("bad thresholds", f"thresholds are whole percents from 1 to {MAX_THRESHOLD} "
                                                f"(e.g. 50,80,100), got {item!r}")
        percents.append(number)
    if not percents:
        raise BudgetError("bad thresholds", "give at least one threshold, e.g. 50,80,100")
    if len(set(percents)) != len(percents):
        raise BudgetError("bad thresholds", f"thresholds must be distinct, got {percents}")
    return tuple(sorted(percents))


def _percent(item: object) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return item
    if isinstance(item, str) and item.isascii() and item.isdigit():
        return int(item)
    return None
