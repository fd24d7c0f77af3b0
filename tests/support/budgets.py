"""Budget test helpers: a hand-built ledger of priced events (one test model at $1 per 1,000 input tokens, so
every cost is known exactly), and the documented projection rule recomputed with exact fractions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

from pipeline.metering.pricing import PriceBook, PriceOverride

MODEL, PROVIDER = "budget-test-model", "acme"
# $1000 per 1M tokens: one token is $0.001, so an event's cost is its tokens / 1000, exactly.
PRICES = PriceBook([PriceOverride(MODEL, datetime(2020, 1, 1, tzinfo=UTC), Decimal(1000), Decimal(1000),
                                  provider=PROVIDER)])
MICRO = Decimal("0.000001")


def local(zone: str, *args) -> datetime:
    """An aware local time (an instant that is not in a repeated DST hour: use UTC for those)."""
    return datetime(*args, tzinfo=ZoneInfo(zone))


@dataclass
class Ledger:
    """Events as written, and what they cost: the truth budgets are checked against."""

    events: list[dict] = field(default_factory=list)

    def add(self, key: str, at: datetime, usd: str, org: str = "", project: str = "") -> dict:
        tokens = Decimal(usd) * 1000
        assert tokens == int(tokens), "costs are whole thousandths of a dollar"
        event = {"request_id": f"{key}/{at.astimezone(UTC).isoformat()}/{len(self.events)}", "api_key_id": key,
                 "org_id": org, "project_id": project, "model": MODEL, "provider": PROVIDER,
                 "timestamp": int(at.timestamp() * 1000), "input_tokens": int(tokens), "output_tokens": 0}
        self.events.append(event)
        return event

    def spent(self, key: str, start: datetime, end: datetime) -> Decimal:
        """Exact spend of events at instants in [start, end)."""
        lo, hi = start.timestamp() * 1000, end.timestamp() * 1000
        return sum((Decimal(e["input_tokens"]) / 1000 for e in self.events
                    if e["api_key_id"] == key and lo <= e["timestamp"] < hi), Decimal(0))

    def trend(self, key: str, zone: ZoneInfo, now: datetime, days: int = 7) -> tuple[Decimal, datetime]:
        """(spend, since) of the documented trend window: from local midnight ``days`` days before today, moved
        to the first local day with spend, to ``now``."""
        today = now.astimezone(zone).date()
        for offset in range(days, -1, -1):
            day = today - timedelta(days=offset)
            start, end = midnight(day, zone), midnight(day + timedelta(days=1), zone)
            if self.spent(key, start, min(end, now)) > 0:
                return self.spent(key, start, now), start
        return Decimal(0), midnight(today - timedelta(days=days), zone)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC).astimezone(zone)


@dataclass(frozen=True)
class Expected:
    daily_rate_usd: Decimal
    projected_usd: Decimal
    exceeds_at: datetime | None  # UTC, whole seconds


def reference_projection(spent: Decimal, amount: Decimal, trend_spend: Decimal, since: datetime, now: datetime,
                         end: datetime) -> Expected:
    """docs/alerts.md's projection with exact fractions: rate = trend spend / max(1 h, now - since);
    projected = spent + rate x (end - now); exceeds where spent + rate x t reaches the amount, if before the
    end, rounded down to the second. Durations in UTC (real time, DST included)."""
    now, since, end = now.astimezone(UTC), since.astimezone(UTC), end.astimezone(UTC)
    window = max(Fraction((now - since) // timedelta(microseconds=1)), Fraction(3_600_000_000))
    rate = Fraction(trend_spend) / window  # USD per microsecond
    remaining = Fraction((end - now) // timedelta(microseconds=1))
    projected = Fraction(spent) + rate * remaining
    exceeds = None
    if spent < amount and rate > 0:
        needed = (Fraction(amount) - Fraction(spent)) / rate
        if needed < remaining:
            exceeds = (now + timedelta(microseconds=int(needed))).replace(microsecond=0)
    return Expected(_decimal(rate * 86_400_000_000), _decimal(projected), exceeds)


def _decimal(value: Fraction) -> Decimal:
    with localcontext() as context:
        context.prec = 80
        return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(MICRO, rounding=ROUND_HALF_EVEN)
