"""Budget periods in an IANA time zone: the local day, the ISO week (Monday to Monday) or the calendar month
that contains an instant, as [start, end) of aware datetimes. Pure logic.

A period starts at local midnight of its first day. Days are calendar days, so a period spans a DST change
with one hour more or less (a Berlin day in late October is 25 hours long). Where a zone skips midnight (a DST
change at 00:00, e.g. America/Santiago), the day starts at the first instant that exists (01:00 local).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

MICROSECOND = timedelta(microseconds=1)


def period_bounds(period: str, zone: ZoneInfo, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the ``period`` (day, week, month) containing instant ``at`` (aware), in ``zone``."""
    day = at.astimezone(zone).date()
    if period == "day":
        first, after = day, day + timedelta(days=1)
    elif period == "week":
        first = day - timedelta(days=day.weekday())
        after = first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return local_midnight(first, zone), local_midnight(after, zone)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``zone``, as an aware datetime in that zone.

    Python's zoneinfo reads a wall-clock time that does not exist (skipped by a DST change) with the offset
    before the change, which is the instant of the change itself: the day's first real instant."""
    instant = datetime.combine(day, time(), zone).astimezone(timezone.utc)
    return instant.astimezone(zone)


def microseconds_between(start: datetime, end: datetime) -> int:
    """Real elapsed time as whole microseconds (not wall-clock: a 25-hour DST day is 25 hours), exact."""
    return (end.astimezone(timezone.utc) - start.astimezone(timezone.utc)) // MICROSECOND
