"""What a usage question asks: a scope (key, org or project), a range [from, to) in an IANA time zone, and
buckets (hour, day, week, month) that follow the range unless one is asked for. Pure logic, no SQL.

Storage is per UTC hour: a stored hour counts in a range when its *start* lies in [from, to), and in the
local day/week/month its start falls in (see pipeline/usage/query.py for the zones with non-whole-hour offsets).

Each single-value rule is a JSON Schema (``*_SCHEMA`` below): the HTTP API declares its parameters with these
schemas (pipeline/usage/api.py), so the OpenAPI document states them, and :func:`parse_request` checks the same
schemas for every caller (API and CLI). What a schema cannot state (from < to, the range's length, the bucket
count, the supported instants) is checked here and named in the parameters' descriptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from importlib.resources import files
from zoneinfo import ZoneInfo

from pipeline.clock import HOUR_S
from pipeline.usage.parameters import QueryError, conforms, shown

__all__ = ["QueryError", "UsageRequest", "parse_request", "parse_zone", "parse_instant"]

SCOPES = {"key": "api_key_id", "org": "org_id", "project": "project_id"}  # scope -> usage_hourly column
GRANULARITIES = ("hour", "day", "week", "month")
# Automatic bucket size by the range's local wall-clock length (a 2-day Berlin range over DST is 49 h).
AUTO_GRANULARITY = ((timedelta(days=2), "hour"), (timedelta(days=92), "day"), (timedelta(days=366), "week"))
# Hourly over a leap year (8784 buckets) fits; more would be an unreadable chart and a heavy response.
MAX_BUCKETS = 10_000
FIRST_INSTANT = datetime(1970, 1, 1, tzinfo=timezone.utc)
LAST_INSTANT = datetime(2106, 1, 1, tzinfo=timezone.utc)  # ClickHouse DateTime is UInt32 seconds (to 2106-02-07)
# ClickHouse's Date starts at 1970-01-01 and saturates below it, so a day or month bucket must start on or after
# that date, and a week (ISO, Monday) bucket on or after the first Monday it holds.
EARLIEST_BUCKET = {"day": date(1970, 1, 1), "week": date(1970, 1, 5), "month": date(1970, 1, 1)}

# -- single-value rules, as JSON Schema ---------------------------------------------------------------------

SCOPE_SCHEMA = {"type": "string", "enum": list(SCOPES)}
MAX_ID_CHARS = 256
# No C0 control characters (U+0000..U+001F) and no DEL (U+007F), as the event contract's ids; ECMA-262 and
# Python read \uXXXX alike.
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u001f\\u007f]*$"
ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": NO_CONTROL_CHARACTERS}
ID_EXPECT = (f"1 to {MAX_ID_CHARS} characters without control characters (U+0000..U+001F, U+007F)")

_YEAR = "(?:19[7-9][0-9]|20[0-9][0-9]|210[0-5])"
_MONTH_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
              "|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_LEAP_YEAR = "(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26])|2104)"  # 2100 is not a leap year
# A real calendar date in 1970..2105, optionally an RFC 3339 time with seconds (no leap second: ClickHouse and
# Python have none), up to 9 fraction digits, and an offset (Z or +-hh:mm, hours 00..23).
INSTANT_PATTERN = (f"^({_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
                   "(?:[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:[.]([0-9]{1,9}))?"
                   "([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))?$")
INSTANT_SCHEMA = {"type": "string", "maxLength": 35, "pattern": INSTANT_PATTERN}
INSTANT_EXPECT = ("a date YYYY-MM-DD (midnight in tz) or an RFC 3339 date-time with 'T', seconds and an offset "
                  "(2026-11-01T09:00:00Z, 2026-11-01T10:00:00.5+01:00), in the years 1970..2105")
_INSTANT = re.compile(INSTANT_PATTERN)

ZONES_FILE = "time_zones.txt"
TIME_ZONES: tuple[str, ...] = tuple(
    line for line in files("pipeline.usage").joinpath(ZONES_FILE).read_text(encoding="utf-8").splitlines()
    if line and not line.startswith("#"))
ZONE_SCHEMA = {"type": "string", "enum": list(TIME_ZONES)}
ZONE_EXPECT = ("not a time zone this API accepts: an IANA name such as UTC or Europe/Berlin (the list is the "
               "tz enum of /api/v1/openapi.json; docs/usage-queries.md says which zones are left out and why)")

GRANULARITY_SCHEMA = {"type": "string", "enum": [*GRANULARITIES, "auto"]}

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
    """The checked request, or :class:`QueryError` naming the first rule broken: the single-value schemas
    above, then from < to, the range's local length (at most ``max_range_days``), at least one stored hour,
    the earliest bucket ClickHouse can hold (:data:`EARLIEST_BUCKET`) and at most :data:`MAX_BUCKETS` buckets.
    ``granularity`` None, "" or "auto" follows the range (:data:`AUTO_GRANULARITY`)."""
    if not conforms(SCOPE_SCHEMA, scope):
        raise QueryError("unknown scope", f"{shown(scope)}: scope must be one of {', '.join(SCOPES)}")
    if not conforms(ID_SCHEMA, scope_id):
        raise QueryError("bad 'id'", f"{shown(scope_id)}: the {scope} id must be {ID_EXPECT}")
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
        raise QueryError("unknown granularity", f"{shown(granularity)}: granularity must be one of "
                                                f"{', '.join(GRANULARITIES)} (or auto)")
    request = UsageRequest(scope, scope_id, start, end, tz, granularity)
    if request.first_hour_epoch >= request.end_hour_epoch:
        raise QueryError("range holds no hour", "usage is stored per UTC hour and no hour starts inside "
                                                "[from, to); widen the range")
    first_bucket = request.bucket_bounds()[0]
    if granularity in EARLIEST_BUCKET and first_bucket < EARLIEST_BUCKET[granularity]:
        earliest = EARLIEST_BUCKET[granularity]
        why = "ClickHouse dates begin on 1970-01-01" + (", and the first Monday among them is 1970-01-05"
                                                          if granularity == "week" else "")
        raise QueryError("out of supported range", f"{granularity} buckets cannot start before {earliest} in {tz}: "
                         f"{why}. This range's first {granularity} would start on {first_bucket}; start the range "
                         f"on {earliest} ({tz}) or later, or ask for hour buckets")
    if (count := request.bucket_count()) > MAX_BUCKETS:
        raise QueryError("too many buckets", f"{count} {granularity} buckets; at most {MAX_BUCKETS}: choose a "
                                             "coarser granularity or a shorter range")
    return request


_ZONE_SET = frozenset(TIME_ZONES)


def parse_zone(name: str) -> ZoneInfo:
    """The zone of an accepted name (:data:`TIME_ZONES`: known to zoneinfo and ClickHouse alike, read the same
    by both; see tests/support/time_zones.py), else :class:`QueryError` "unknown time zone"."""
    if name not in _ZONE_SET:
        raise QueryError("unknown time zone", f"{shown(name)} is {ZONE_EXPECT}")
    return ZoneInfo(name)


def parse_instant(text: str, zone: ZoneInfo, name: str) -> datetime:
    """``YYYY-MM-DD`` (midnight in ``zone``) or an RFC 3339 date-time with an offset (:data:`INSTANT_PATTERN`),
    as an aware datetime in [1970-01-01T00:00:00Z, 2106-01-01T00:00:00Z]. Fractions beyond microseconds round
    up, so the hours a range holds (those starting in [from, to)) are exactly those of the text."""
    match = _INSTANT.fullmatch(text) if len(text) <= INSTANT_SCHEMA["maxLength"] else None
    if match is None:
        raise QueryError(f"bad '{name}'", f"{shown(text)} is not {INSTANT_EXPECT}")
    day, hour, minute, second, fraction, offset = match.groups()
    if hour is None:
        value = datetime.combine(date.fromisoformat(day), time(), zone)
    else:
        nanoseconds = int((fraction or "").ljust(9, "0"))
        utc_offset = timedelta(0) if offset in "Zz" else (
            (1 if offset[0] == "+" else -1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        value = (datetime.combine(date.fromisoformat(day), time(int(hour), int(minute), int(second)),
                                  timezone(utc_offset)) + timedelta(microseconds=-(-nanoseconds // 1000)))
    if not FIRST_INSTANT <= value <= LAST_INSTANT:
        raise QueryError("out of supported range", f"'{name}' ({value.isoformat()}) must lie between "
                         "1970-01-01T00:00:00Z and 2106-01-01T00:00:00Z (ClickHouse DateTime)")
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
    hours = -(-(instant - FIRST_INSTANT) // timedelta(hours=1))
    return hours * HOUR_S


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def previous_period(request: UsageRequest) -> UsageRequest | None:
    """The period just before ``request``: the same local (wall-clock) length in the same zone, ending at its
    ``from``. A range of whole local days gives the same number of calendar days before it, whatever their real
    length (a Berlin week ending on 2026-11-01 has 169 hours, the week before it 168), and a 24-hour range that
    ends after a DST change is 23 or 25 wall-clock hours long, so its previous period is too.

    The start is ``from``'s wall-clock time minus the length, read as zoneinfo reads a local time with
    ``fold=0``: a time repeated by a DST change is its first occurrence, a time skipped by one is read with the
    offset before the change (an instant just after the gap). Same scope, id, zone and granularity; None when
    the start would lie before 1970-01-01T00:00:00Z (ClickHouse holds nothing earlier)."""
    zone = request.zone
    length = _wall_clock(request.end, zone) - _wall_clock(request.start, zone)
    # Through UTC and back: a skipped wall time becomes the real local time of that instant.
    start = (_wall_clock(request.start, zone) - length).replace(tzinfo=zone).astimezone(timezone.utc)
    if start < FIRST_INSTANT:
        return None
    start = start.astimezone(zone)
    return UsageRequest(request.scope, request.scope_id, start, request.start, request.tz, request.granularity)
