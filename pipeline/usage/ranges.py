"""What a usage question asks: a scope (key, org or project), a range [from, to) in an IANA time zone, and
buckets (hour, day, week, month) that follow the range unless one is asked for. Pure logic, no SQL.

Storage is per UTC hour: a stored hour counts in a range when its *start* lies in [from, to), and in the
local day/week/month its start falls in (see pipeline/usage/query.py for the zones with non-whole-hour offsets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.clock import HOUR_S

SCOPES = {"key": "api_key_id", "org": "org_id", "project": "project_id"}  # scope -> usage_hourly column
GRANULARITIES = ("hour", "day", "week", "month")
# Automatic bucket size by the range's local wall-clock length (a 2-day Berlin range over DST is 49 h).
AUTO_GRANULARITY = ((timedelta(days=2), "hour"), (timedelta(days=92), "day"), (timedelta(days=366), "week"))
# Hourly over a leap year (8784 buckets) fits; more would be an unreadable chart and a heavy response.
MAX_BUCKETS = 10_000
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIRST_INSTANT = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LAST_INSTANT = datetime(2106, 1, 1, tzinfo=timezone.utc)  # ClickHouse DateTime is UInt32 seconds


class QueryError(ValueError):
    """A request that cannot be answered as asked; ``error`` is a short title, ``detail`` says what to change."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error, self.detail = error, detail


@dataclass(frozen=True)
class UsageRequest:
    """One scope (key, org or project) over [start, end) in a zone, bucketed by ``granularity``.
    Build it with :func:`parse_request`, which validates everything."""

    scope: str
    scope_id: str
    start: datetime  # aware, in the requested zone; inclusive
    end: datetime  # aware; exclusive
    tz: str
    granularity: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def first_hour_epoch(self) -> int:
        return _ceil_hour(self.start)

    @property
    def end_hour_epoch(self) -> int:
        return _ceil_hour(self.end)

    def bucket_bounds(self) -> tuple[int | date, int | date]:
        """Keys of the first and last bucket (hour: UTC epoch seconds; otherwise the local start date)."""
        last_hour = self.end_hour_epoch - HOUR_S
        return (bucket_key(self.first_hour_epoch, self.granularity, self.zone),
                bucket_key(last_hour, self.granularity, self.zone))

    def bucket_count(self) -> int:
        first, last = self.bucket_bounds()
        if self.granularity == "hour":
            return (last - first) // HOUR_S + 1
        if self.granularity == "month":
            return (last.year - first.year) * 12 + last.month - first.month + 1
        return (last - first).days // (7 if self.granularity == "week" else 1) + 1

    def fill_bounds(self) -> tuple[int | date, int | date]:
        """WITH FILL's FROM and (exclusive) TO."""
        first, last = self.bucket_bounds()
        return first, next_bucket(last, self.granularity)


def parse_request(scope: str, scope_id: str, start_text: str, end_text: str, tz: str = "UTC",
                  granularity: str | None = None, max_range_days: int | None = None) -> UsageRequest:
    if scope not in SCOPES:
        raise QueryError("unknown scope", f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not scope_id or len(scope_id) > 256:
        raise QueryError(f"bad {scope} id", f"the {scope} id must be 1 to 256 characters")
    zone = parse_zone(tz)
    start = parse_instant(start_text, zone, "from").astimezone(zone)
    end = parse_instant(end_text, zone, "to").astimezone(zone)
    if start >= end:
        raise QueryError("empty range", f"'from' ({start.isoformat()}) must be before 'to' ({end.isoformat()})")
    span = _wall_clock(end, zone) - _wall_clock(start, zone)
    if max_range_days is not None and span > timedelta(days=max_range_days):
        raise QueryError("range too long", f"the range spans {span.days} days; at most {max_range_days} allowed")
    if granularity in (None, "", "auto"):
        granularity = next((name for limit, name in AUTO_GRANULARITY if span <= limit), "month")
    elif granularity not in GRANULARITIES:
        raise QueryError("unknown granularity", f"granularity must be one of {', '.join(GRANULARITIES)} "
                                                f"(or auto), got {granularity!r}")
    request = UsageRequest(scope, scope_id, start, end, tz, granularity)
    if request.first_hour_epoch >= request.end_hour_epoch:
        raise QueryError("range holds no hour", "usage is stored per UTC hour and no hour starts inside "
                                                "[from, to); widen the range")
    if (count := request.bucket_count()) > MAX_BUCKETS:
        raise QueryError("too many buckets", f"{count} {granularity} buckets; at most {MAX_BUCKETS}: choose a "
                                             "coarser granularity or a shorter range")
    return request


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError("unknown time zone", f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None


def parse_instant(text: str, zone: ZoneInfo, name: str) -> datetime:
    """``YYYY-MM-DD`` (midnight in ``zone``) or an RFC 3339 datetime with an offset, as an aware datetime."""
    try:
        if _DATE_ONLY.match(text):
            value = datetime.combine(date.fromisoformat(text), time(), zone)
        else:
            value = datetime.fromisoformat(text.upper())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise QueryError(f"bad '{name}'", f"{text!r} is neither a date (YYYY-MM-DD) nor an RFC 3339 datetime "
                                          "with an offset (2026-11-01T09:00:00Z, 2026-11-01T10:00:00+01:00)")
    if not _FIRST_INSTANT <= value < _LAST_INSTANT:
        raise QueryError(f"bad '{name}'", f"{text!r} is outside 1970..2105")
    return value


def bucket_key(hour_epoch: int, granularity: str, zone: ZoneInfo) -> int | date:
    """The bucket a stored hour (UTC epoch seconds of its start) falls in, as ClickHouse computes it."""
    if granularity == "hour":
        return hour_epoch
    day = datetime.fromtimestamp(hour_epoch, zone).date()
    if granularity == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks: Monday
    return day.replace(day=1) if granularity == "month" else day


def next_bucket(key: int | date, granularity: str) -> int | date:
    if granularity == "hour":
        return key + HOUR_S
    if granularity == "month":
        return date(key.year + key.month // 12, key.month % 12 + 1, 1)
    return key + timedelta(days=7 if granularity == "week" else 1)


def bucket_start(key: int | date, granularity: str, zone: ZoneInfo) -> datetime:
    """A bucket's start as an aware local datetime: the UTC hour, or local midnight of the start date."""
    if granularity == "hour":
        return datetime.fromtimestamp(key, zone)
    return datetime.combine(key, time(), zone)


def _ceil_hour(instant: datetime) -> int:
    """Epoch seconds of the first UTC hour starting at or after ``instant`` (integer maths: exact)."""
    hours = -(-(instant - _FIRST_INSTANT) // timedelta(hours=1))
    return hours * HOUR_S


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class Period:
    """A range [start, end) in a zone, over every key (e.g. the unpriced-models list). Build it with
    :func:`parse_period`."""

    start: datetime  # aware, in the requested zone; inclusive
    end: datetime  # aware; exclusive
    tz: str


def parse_period(start_text: str, end_text: str, tz: str = "UTC", max_range_days: int | None = None) -> Period:
    """``from`` and ``to`` as :func:`parse_request` reads them (dates are local midnight in ``tz``)."""
    zone = parse_zone(tz)
    start = parse_instant(start_text, zone, "from").astimezone(zone)
    end = parse_instant(end_text, zone, "to").astimezone(zone)
    if start >= end:
        raise QueryError("empty range", f"'from' ({start.isoformat()}) must be before 'to' ({end.isoformat()})")
    if max_range_days is not None and end - start > timedelta(days=max_range_days):
        raise QueryError("range too long", f"the range spans {(end - start).days} days; at most {max_range_days} "
                                           "allowed")
    return Period(start, end, tz)
