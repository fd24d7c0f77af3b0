"""What a usage question asks: a scope (a key, an org, a project, or all keys), a range [from, to) in an IANA time
zone, and buckets (quarter_hour, hour, day, week, month) that follow the range unless one is asked for. Pure logic,
no SQL.

Storage is per 15-minute window of UTC (pipeline/clock.py): a window counts in a range when its *start* lies in
[from, to), and in the local bucket its start falls in. Every UTC offset in use since 1972 is a whole number of
quarter hours, so local days, weeks and months, and local hours, are exact sets of windows in every zone, DST
included (Asia/Kolkata, Asia/Kathmandu, Australia/Lord_Howe's 30-minute shift).

Each single-value rule is a JSON Schema (``*_SCHEMA`` below): the HTTP API declares its parameters with these
schemas (pipeline/usage/api.py), so the OpenAPI document states them, and :func:`parse_request` checks the same
schemas for every caller (API and CLI). What a schema cannot state (from < to, the range's length, the bucket
count, the supported instants) is checked here and named in the parameters' descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from importlib.resources import files
from zoneinfo import ZoneInfo

from pipeline.clock import DAY_S, HOUR_S, WINDOW_S
from pipeline.usage.parameters import QueryError, conforms, shown

__all__ = ["QueryError", "UsageRequest", "parse_request", "parse_zone", "parse_instant"]

SCOPES = {"key": "api_key_id", "org": "org_id", "project": "project_id"}  # scope -> usage_hourly column
ALL = "all"  # every key (admin): the one scope without an id
GRANULARITIES = ("quarter_hour", "hour", "day", "week", "month")
# Automatic bucket size by the range's local wall-clock length (a 2-day Berlin range over DST is 49 h).
AUTO_GRANULARITY = ((timedelta(hours=6), "quarter_hour"), (timedelta(days=2), "hour"), (timedelta(days=92), "day"),
                    (timedelta(days=366), "week"))
# Hourly over a leap year (8784 buckets) fits; more would be an unreadable chart and a heavy response.
MAX_BUCKETS = 10_000
FIRST_INSTANT = datetime(1970, 1, 1, tzinfo=timezone.utc)
LAST_INSTANT = datetime(2106, 1, 1, tzinfo=timezone.utc)  # ClickHouse DateTime is UInt32 seconds (to 2106-02-07)
# ClickHouse's Date starts at 1970-01-01 and saturates below it, so a day or month bucket must start on or after
# that date, and a week (ISO, Monday) bucket on or after the first Monday it holds.
EARLIEST_BUCKET = {"day": date(1970, 1, 1), "week": date(1970, 1, 5), "month": date(1970, 1, 1)}

# -- single-value rules, as JSON Schema ---------------------------------------------------------------------

SCOPE_SCHEMA = {"type": "string", "enum": [*SCOPES, ALL]}
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
    """One scope (key, org, project, or all keys) over [start, end) in a zone, bucketed by ``granularity``.
    Build it with :func:`parse_request`, which validates everything."""

    scope: str
    scope_id: str  # "" for scope "all"
    start: datetime  # aware, in the requested zone; inclusive
    end: datetime  # aware; exclusive
    tz: str
    granularity: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def first_window_epoch(self) -> int:
        """UTC epoch seconds of the first 15-minute window starting at or after ``start``."""
        return _ceil_window(self.start)

    @property
    def end_window_epoch(self) -> int:
        """UTC epoch seconds of the first window starting at or after ``end`` (exclusive)."""
        return _ceil_window(self.end)

    @property
    def first_hour_epoch(self) -> int:
        """The UTC hour of the first window (stored rows are keyed by hour: this bounds the index scan)."""
        return self.first_window_epoch // HOUR_S * HOUR_S

    @property
    def end_hour_epoch(self) -> int:
        """The first UTC hour after the last window (exclusive)."""
        return -(-self.end_window_epoch // HOUR_S) * HOUR_S

    def bucket_bounds(self) -> tuple[int | date, int | date]:
        """Keys of the first and last bucket (quarter_hour and hour: UTC epoch seconds of the bucket's start;
        otherwise its local start date)."""
        return (bucket_key(self.first_window_epoch, self.granularity, self.zone),
                bucket_key(self.end_window_epoch - WINDOW_S, self.granularity, self.zone))

    def bucket_keys(self) -> list[int | date]:
        """Every bucket of the range, in order: what a zero-filled series holds."""
        first, last = self.bucket_bounds()
        if self.granularity == "hour":  # local hours: 30 or 45 minutes past a UTC hour in some zones
            return [key for key, _ in local_hours(self.zone, self.first_window_epoch, self.end_window_epoch)]
        if self.granularity == "quarter_hour":
            return list(range(first, last + WINDOW_S, WINDOW_S))
        keys = [first]
        while keys[-1] != last:
            keys.append(next_bucket(keys[-1], self.granularity))
        return keys

    def bucket_count(self) -> int:
        first, last = self.bucket_bounds()
        if self.granularity == "quarter_hour":
            return (last - first) // WINDOW_S + 1
        if self.granularity == "hour":
            hours = (last - first) // HOUR_S + 1
            # Local hours are whole UTC hours apart except across a 30-minute DST shift (Lord_Howe): count them
            # one by one unless the range is far beyond the limit anyway.
            return hours if hours > 2 * MAX_BUCKETS else len(self.bucket_keys())
        if self.granularity == "month":
            return (last.year - first.year) * 12 + last.month - first.month + 1
        return (last - first).days // (7 if self.granularity == "week" else 1) + 1

    def bucket_starts(self) -> dict[int | date, datetime]:
        """Every bucket's key -> its local start (as :func:`bucket_start` gives it), in order, computed in one pass
        (a year of local hours costs one zone lookup per hour, not per window)."""
        zone = self.zone
        if self.granularity == "hour":
            return {key: datetime.fromtimestamp(start, zone)
                    for key, start in local_hours(zone, self.first_window_epoch, self.end_window_epoch)}
        return {key: bucket_start(key, self.granularity, zone) for key in self.bucket_keys()}

    def decomposition(self) -> "Decomposition":
        """The range's windows as whole UTC days, whole UTC hours and the 15-minute windows at its edges
        (:func:`decompose`), for answers without buckets (totals, per-model totals)."""
        return decompose(self.first_window_epoch, self.end_window_epoch)


def parse_scope(scope: str, scope_id: str | None) -> str:
    """The checked id of ``scope`` ("" for scope "all", which takes none), or :class:`QueryError`: unknown scope,
    missing 'id' (every scope but "all" needs one), unexpected 'id' (given with "all"), bad 'id'."""
    if not conforms(SCOPE_SCHEMA, scope):
        raise QueryError("unknown scope", f"{shown(scope)}: scope must be one of {', '.join(SCOPE_SCHEMA['enum'])}")
    if scope == ALL:
        if scope_id:
            raise QueryError("unexpected 'id'", "scope all reads every key: give no id")
        return ""
    if scope_id is None:
        raise QueryError("missing 'id'", f"scope {scope} reads one {SCOPES[scope]}: give it as id ({ID_EXPECT})")
    if not conforms(ID_SCHEMA, scope_id):
        raise QueryError("bad 'id'", f"{shown(scope_id)}: the {scope} id must be {ID_EXPECT}")
    return scope_id


def parse_request(scope: str, scope_id: str | None, start_text: str, end_text: str, tz: str = "UTC",
                  granularity: str | None = None, max_range_days: int | None = None) -> UsageRequest:
    """The checked request, or :class:`QueryError` naming the first rule broken: the single-value schemas
    above, an id for every scope but "all" and none for it, then from < to, the range's local length (at most
    ``max_range_days``), at least one stored window, the earliest bucket ClickHouse can hold
    (:data:`EARLIEST_BUCKET`) and at most :data:`MAX_BUCKETS` buckets. ``granularity`` None, "" or "auto" follows
    the range (:data:`AUTO_GRANULARITY`)."""
    scope_id = parse_scope(scope, scope_id)
    zone = parse_zone(tz)
    start, start_added = _instant_rounded_up(start_text, zone, "from")
    end, end_added = _instant_rounded_up(end_text, zone, "to")
    start, end = start.astimezone(zone), end.astimezone(zone)
    # Judged on the texts' exact instants: two that round up to one microsecond are still ordered (and then hold
    # no window, which the window rule below reports).
    if start > end or (start == end and start_added <= end_added):
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
    if request.first_window_epoch >= request.end_window_epoch:
        raise QueryError("range holds no window", "usage is stored per 15-minute window and no window starts "
                                                  "inside [from, to); widen the range")
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
    return _instant_rounded_up(text, zone, name)[0]


def _instant_rounded_up(text: str, zone: ZoneInfo, name: str) -> tuple[datetime, int]:
    """:func:`parse_instant`'s value and the nanoseconds (0..999) its rounding up added to the text's instant."""
    added = 0
    match = _INSTANT.fullmatch(text) if len(text) <= INSTANT_SCHEMA["maxLength"] else None
    if match is None:
        raise QueryError(f"bad '{name}'", f"{shown(text)} is not {INSTANT_EXPECT}")
    day, hour, minute, second, fraction, offset = match.groups()
    if hour is None:
        value = datetime.combine(date.fromisoformat(day), time(), zone)
    else:
        nanoseconds = int((fraction or "").ljust(9, "0"))
        added = -nanoseconds % 1000
        utc_offset = timedelta(0) if offset in "Zz" else (
            (1 if offset[0] == "+" else -1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        value = (datetime.combine(date.fromisoformat(day), time(int(hour), int(minute), int(second)),
                                  timezone(utc_offset)) + timedelta(microseconds=-(-nanoseconds // 1000)))
    if not FIRST_INSTANT <= value <= LAST_INSTANT:
        raise QueryError("out of supported range", f"'{name}' ({value.isoformat()}) must lie between "
                         "1970-01-01T00:00:00Z and 2106-01-01T00:00:00Z (ClickHouse DateTime)")
    return value, added


def bucket_key(window_epoch: int, granularity: str, zone: ZoneInfo) -> int | date:
    """The bucket a stored window (UTC epoch seconds of its start) falls in, as the query module's SQL computes
    it: the window itself, its local hour's start (epoch seconds), or the local date of its day, week's Monday
    or month's first day."""
    if granularity == "quarter_hour":
        return window_epoch
    local = datetime.fromtimestamp(window_epoch, zone)
    if granularity == "hour":
        return window_epoch - local.minute * 60
    day = local.date()
    if granularity == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks: Monday
    return day.replace(day=1) if granularity == "month" else day


def next_bucket(key: int | date, granularity: str) -> int | date:
    """The bucket after ``key`` (not for hour: local hours are not evenly spaced across a 30-minute DST shift;
    see UsageRequest.bucket_keys)."""
    if granularity == "quarter_hour":
        return key + WINDOW_S
    if granularity == "month":
        return date(key.year + key.month // 12, key.month % 12 + 1, 1)
    return key + timedelta(days=7 if granularity == "week" else 1)


def bucket_start(key: int | date, granularity: str, zone: ZoneInfo) -> datetime:
    """A bucket's start as an aware local datetime: the window or local hour, or local midnight of the date.

    A local hour's key is its window's instant less the local minutes; where a DST shift of 30 minutes skips
    the hour's first half (Australia/Lord_Howe), the hour starts at its first window instead."""
    if granularity == "quarter_hour":
        return datetime.fromtimestamp(key, zone)
    if granularity == "hour":
        first = next((w for w in range(key, key + HOUR_S, WINDOW_S) if bucket_key(w, "hour", zone) == key), key)
        return datetime.fromtimestamp(first, zone)
    return datetime.combine(key, time(), zone)


def _ceil_window(instant: datetime) -> int:
    """Epoch seconds of the first 15-minute window starting at or after ``instant`` (integer maths: exact)."""
    windows = -(-(instant - FIRST_INSTANT) // timedelta(seconds=WINDOW_S))
    return windows * WINDOW_S


def _wall_clock(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


# -- reading coarse rows: a range as whole UTC days, whole UTC hours and 15-minute windows ---------------------

Runs = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Decomposition:
    """Disjoint runs ``(start, end)`` of UTC epoch seconds, ``end`` exclusive, that together hold exactly the
    15-minute windows of a range: ``days`` are whole UTC days, ``hours`` whole UTC hours outside those days,
    ``windows`` the remaining windows (at the range's edges, and around cuts that fall inside an hour). Adjacent
    runs of one grain are joined; each run is as coarse as the range and the cuts allow."""

    windows: Runs
    hours: Runs
    days: Runs


def decompose(first: int, end: int, cuts: Iterable[int] = ()) -> Decomposition:
    """[first, end) (UTC epoch seconds on 15-minute windows) split so that a coarse row never straddles an edge:
    no day or hour run crosses ``first``, ``end`` or any of ``cuts`` (window starts inside the range where a bucket
    begins, e.g. local midnights; those outside are ignored). Every window of the range is in exactly one run.
    ValueError when an instant is not on a 15-minute window, or first > end."""
    if first > end or any(instant % WINDOW_S for instant in (first, end, *cuts)):
        raise ValueError(f"decompose({first}, {end}, cuts): instants must be 15-minute window starts, first <= end")
    points = sorted({first, end, *(cut for cut in cuts if first < cut < end)})
    windows: list[tuple[int, int]] = []
    hours: list[tuple[int, int]] = []
    days: list[tuple[int, int]] = []
    for start, stop in zip(points, points[1:]):
        first_hour, end_hour = _ceil(start, HOUR_S), stop // HOUR_S * HOUR_S
        if first_hour >= end_hour:  # no whole hour between two cuts: windows only
            _join(windows, start, stop)
            continue
        first_day, end_day = _ceil(start, DAY_S), stop // DAY_S * DAY_S
        _join(windows, start, first_hour)
        if first_day < end_day:
            _join(hours, first_hour, first_day)
            _join(days, first_day, end_day)
            _join(hours, end_day, end_hour)
        else:
            _join(hours, first_hour, end_hour)
        _join(windows, end_hour, stop)
    return Decomposition(tuple(windows), tuple(hours), tuple(days))


def _ceil(instant: int, unit: int) -> int:
    return -(-instant // unit) * unit


def _join(runs: list[tuple[int, int]], start: int, stop: int) -> None:
    if start >= stop:
        return
    if runs and runs[-1][1] == start:
        runs[-1] = (runs[-1][0], stop)
    else:
        runs.append((start, stop))


# -- local hours, fast: the zone's offset runs instead of one lookup per window --------------------------------

def offset_runs(zone: ZoneInfo, first: int, end: int) -> list[tuple[int, int, int]]:
    """``(start, stop, utc_offset_s)`` runs covering the windows of [first, end) (UTC epoch seconds on 15-minute
    windows): the zone's UTC offset is ``utc_offset_s`` at every window of [start, stop).

    The offset is read at every UTC midnight of the range and at its ends, and a change between two readings is
    located by bisection over the windows. This assumes a zone changes its offset at most once between two UTC
    midnights, as ClickHouse's own tables do (one offset change per day); tests/unit/test_query_ranges.py checks
    it for every accepted zone against zoneinfo's transition data."""
    def offset(instant: int) -> int:
        return int(datetime.fromtimestamp(instant, zone).utcoffset().total_seconds())

    if first >= end:
        return []
    last = end - WINDOW_S
    samples = [first, *range(_ceil(first + 1, DAY_S), last, DAY_S), last]
    readings = [(instant, offset(instant)) for instant in samples]
    runs = []
    start, current = readings[0]
    for (before, old), (after, new) in zip(readings, readings[1:]):
        if new == old:
            continue
        low, high = before, after  # offset(low) == old, offset(high) == new: find the first window reading new
        while high - low > WINDOW_S:
            middle = (low + high) // 2 // WINDOW_S * WINDOW_S
            low, high = (middle, high) if offset(middle) == old else (low, middle)
        runs.append((start, high, current))
        start, current = high, new
    runs.append((start, end, current))
    return runs


def local_hours(zone: ZoneInfo, first: int, end: int) -> list[tuple[int, int]]:
    """The local hours holding the windows of [first, end), in order, as ``(key, start)``: the key is what
    :func:`bucket_key` gives the hour's windows, the start its first window (UTC epoch seconds; before ``first``
    when the range begins inside the hour). A local hour lies within [key, key + 1 h), so reading from an hour
    before ``first`` finds the start of the first one."""
    hours: list[tuple[int, int]] = []
    for start, stop, utc_offset in offset_runs(zone, first - HOUR_S, end):
        key = start - (start + utc_offset) % HOUR_S
        if not hours or hours[-1][0] != key:
            hours.append((key, start))
        for key in range(key + HOUR_S, stop, HOUR_S):
            hours.append((key, key))
    inside = [i for i, (_, start) in enumerate(hours) if start <= first]
    return hours[inside[-1] if inside else 0:]


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

