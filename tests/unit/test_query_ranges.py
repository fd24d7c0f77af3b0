"""Range, bucket and time-zone rules of the usage view (pure logic: no ClickHouse)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline.usage.ranges import (MAX_BUCKETS, TIME_ZONES, QueryError, bucket_key, bucket_start, next_bucket,
                                   parse_instant, parse_request, previous_period)

BERLIN, KOLKATA, KATHMANDU = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Asia/Kathmandu")


def request(start: str, end: str, tz: str = "UTC", granularity: str | None = None, **kwargs):
    return parse_request("key", "k", start, end, tz, granularity, **kwargs)


def test_a_date_is_midnight_in_the_requested_zone():
    assert parse_instant("2026-11-01", BERLIN, "from") == datetime(2026, 11, 1, tzinfo=BERLIN)
    assert request("2026-11-01", "2026-11-02", "Europe/Berlin").start.isoformat() == "2026-11-01T00:00:00+01:00"


@pytest.mark.parametrize("text,expected", [
    ("2026-11-01T09:00:00Z", datetime(2026, 11, 1, 9, tzinfo=UTC)),
    ("2026-11-01t09:00:00z", datetime(2026, 11, 1, 9, tzinfo=UTC)),
    ("2026-11-01T10:00:00+01:00", datetime(2026, 11, 1, 9, tzinfo=UTC)),
    ("2026-11-01T09:00:00.250Z", datetime(2026, 11, 1, 9, 0, 0, 250_000, tzinfo=UTC)),
])
def test_rfc3339_datetimes_keep_their_offset(text, expected):
    assert parse_instant(text, BERLIN, "from") == expected


@pytest.mark.parametrize("text", ["2026-11-01T09:00:00", "yesterday", "2026-13-01", "", "2026-11-31",
                                  "1969-12-31", "2106-02-08"])
def test_unusable_instants_are_rejected_with_their_name(text):
    with pytest.raises(QueryError) as error:
        parse_instant(text, BERLIN, "from")
    assert error.value.error == "bad 'from'"


@pytest.mark.parametrize("kwargs,error", [
    ({"start": "2026-11-02", "end": "2026-11-01"}, "empty range"),
    ({"start": "2026-11-01", "end": "2026-11-01"}, "empty range"),
    # nanoseconds that round up to one microsecond: ordered as written, not as rounded
    ({"start": "1978-02-07T17:47:00.184742482Z", "end": "1978-02-07T17:47:00.184742462Z"}, "empty range"),
    ({"start": "1978-02-07T17:47:00.184742462Z", "end": "1978-02-07T17:47:00.184742462Z"}, "empty range"),
    ({"start": "1978-02-07T17:47:00.184742462Z", "end": "1978-02-07T17:47:00.184742482Z"}, "range holds no window"),
    ({"start": "2026-11-01T09:59:59.999999001Z", "end": "2026-11-01T10:00:00Z"}, "range holds no window"),
    ({"tz": "Mars/Olympus"}, "unknown time zone"),
    ({"tz": "../../etc/passwd"}, "unknown time zone"),
    ({"granularity": "minute"}, "unknown granularity"),
    ({"start": "2026-11-01T10:01:00Z", "end": "2026-11-01T10:14:59Z"}, "range holds no window"),
    ({"start": "2024-01-01", "end": "2025-03-01", "max_range_days": 400}, "range too long"),
    ({"start": "2020-01-01", "end": "2025-01-01", "granularity": "hour"}, "too many buckets"),
])
def test_bad_requests_say_what_is_wrong(kwargs, error):
    args = {"start": "2026-11-01", "end": "2026-11-08", "tz": "UTC", "granularity": None, **kwargs}
    with pytest.raises(QueryError) as raised:
        request(args.pop("start"), args.pop("end"), **args)
    assert raised.value.error == error and raised.value.detail


@pytest.mark.parametrize("scope,scope_id", [("team", "x"), ("key", ""), ("key", "x" * 257)])
def test_scope_and_id_are_checked(scope, scope_id):
    with pytest.raises(QueryError):
        parse_request(scope, scope_id, "2026-11-01", "2026-11-02")


@pytest.mark.parametrize("start,end,expected", [
    ("2026-11-01T00:00:00Z", "2026-11-01T06:00:00Z", "quarter_hour"),  # a few hours
    ("2026-11-01T00:00:00Z", "2026-11-01T06:15:00Z", "hour"),
    ("2026-11-01", "2026-11-03", "hour"),  # 2 days
    ("2026-11-01", "2026-11-03T01:00:00+00:00", "day"),
    ("2026-08-01", "2026-11-01", "day"),  # 92 days
    ("2026-08-01", "2026-11-02", "week"),
    ("2026-01-01", "2027-01-01", "week"),  # 365 days
    ("2024-01-01", "2025-01-01", "week"),  # 366 days
    ("2024-01-01", "2025-01-02", "month"),
])
def test_the_bucket_follows_the_range(start, end, expected):
    assert request(start, end).granularity == expected


def test_ranges_are_measured_on_the_local_calendar_so_a_dst_day_does_not_change_the_bucket():
    # Two Berlin days over the end of DST are 49 hours, still hourly; and 48 buckets + 1.
    berlin = request("2026-10-25", "2026-10-27", "Europe/Berlin")
    assert berlin.granularity == "hour" and berlin.bucket_count() == 49


def test_explicit_granularity_wins_and_hourly_over_a_leap_year_is_allowed():
    year = request("2024-01-01", "2025-01-01", granularity="hour")
    assert year.bucket_count() == 8784 <= MAX_BUCKETS
    assert request("2024-01-01", "2025-01-01", granularity="auto").granularity == "week"


def test_berlin_day_buckets_over_the_end_of_dst():
    r = request("2026-10-24", "2026-10-27", "Europe/Berlin", "day")
    assert r.bucket_count() == 3 and r.bucket_keys() == [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)]
    assert (r.end_window_epoch - r.first_window_epoch) // 900 == (24 + 25 + 24) * 4
    assert bucket_start(date(2026, 10, 25), "day", BERLIN).isoformat() == "2026-10-25T00:00:00+02:00"
    assert bucket_start(date(2026, 10, 26), "day", BERLIN).isoformat() == "2026-10-26T00:00:00+01:00"
    # 00:30 UTC on Oct 25 is 02:30 CEST: still Oct 25; 23:30 UTC is 00:30 CET on Oct 26.
    assert bucket_key(int(datetime(2026, 10, 25, 0, tzinfo=UTC).timestamp()), "day", BERLIN) == date(2026, 10, 25)
    assert bucket_key(int(datetime(2026, 10, 25, 23, tzinfo=UTC).timestamp()), "day", BERLIN) == date(2026, 10, 26)


def test_half_and_quarter_hour_zones_have_exact_days_and_local_hours():
    """Storage is per 15-minute window: a Kolkata day starts at 18:30 UTC, a Kathmandu day at 18:15 UTC."""
    r = request("2026-11-01", "2026-11-02", "Asia/Kolkata")
    assert datetime.fromtimestamp(r.first_window_epoch, UTC) == datetime(2026, 10, 31, 18, 30, tzinfo=UTC)
    assert datetime.fromtimestamp(r.end_window_epoch, UTC) == datetime(2026, 11, 1, 18, 30, tzinfo=UTC)
    assert r.granularity == "hour" and r.bucket_count() == 24
    assert bucket_start(r.bucket_keys()[0], "hour", KOLKATA).isoformat() == "2026-11-01T00:00:00+05:30"
    assert r.first_hour_epoch == int(datetime(2026, 10, 31, 18, tzinfo=UTC).timestamp())  # the index's bound
    kathmandu = request("2026-11-01", "2026-11-02", "Asia/Kathmandu")
    assert bucket_start(kathmandu.bucket_keys()[0], "hour", KATHMANDU).isoformat() == "2026-11-01T00:00:00+05:45"
    assert bucket_key(int(datetime(2026, 10, 31, 18, 14, tzinfo=UTC).timestamp()) // 900 * 900, "day",
                      KATHMANDU) == date(2026, 10, 31)
    assert bucket_key(int(datetime(2026, 10, 31, 18, 15, tzinfo=UTC).timestamp()), "day", KATHMANDU) \
        == date(2026, 11, 1)


def test_local_hours_across_lord_howes_30_minute_dst_shift():
    """On 2026-10-04 Lord Howe goes from +10:30 to +11:00 at 02:00 local: that local hour is 30 minutes long."""
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    r = request("2026-10-04T00:00:00+10:30", "2026-10-04T05:00:00+11:00", "Australia/Lord_Howe", "hour")
    starts = [bucket_start(key, "hour", lord_howe).isoformat() for key in r.bucket_keys()]
    assert starts == ["2026-10-04T00:00:00+10:30", "2026-10-04T01:00:00+10:30", "2026-10-04T02:30:00+11:00",
                      "2026-10-04T03:00:00+11:00", "2026-10-04T04:00:00+11:00"]
    assert r.bucket_count() == 5


def test_partial_windows_round_the_start_up_and_count_windows_starting_before_the_end():
    r = request("2026-11-01T10:00:00.5Z", "2026-11-01T12:30:00Z")
    assert r.granularity == "quarter_hour"
    assert datetime.fromtimestamp(r.first_window_epoch, UTC).minute == 15  # 10:00:00.5 rounds up to 10:15
    assert datetime.fromtimestamp(r.end_window_epoch, UTC) == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert r.bucket_count() == 9 == len(r.bucket_keys())  # 10:15 .. 12:15
    hourly = request("2026-11-01T10:00:00.5Z", "2026-11-01T12:30:00Z", granularity="hour")
    assert [datetime.fromtimestamp(k, UTC).hour for k in hourly.bucket_keys()] == [10, 11, 12]


def test_weeks_start_on_monday_and_months_roll_over_the_year():
    monday = bucket_key(int(datetime(2026, 11, 8, 12, tzinfo=UTC).timestamp()), "week", ZoneInfo("UTC"))
    assert monday == date(2026, 11, 2) and next_bucket(monday, "week") == date(2026, 11, 9)
    assert next_bucket(date(2026, 12, 1), "month") == date(2027, 1, 1)
    r = request("2026-11-15", "2027-02-10", "UTC", "month")
    assert r.bucket_count() == 4 and r.bucket_keys() == [date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1),
                                                         date(2027, 2, 1)]


def test_the_range_is_shown_in_the_requested_zone():
    r = request("2026-11-01T09:00:00Z", "2026-11-02T09:00:00Z", "Europe/Berlin")
    assert r.start.isoformat() == "2026-11-01T10:00:00+01:00" and r.end - r.start == timedelta(days=1)


def test_a_range_of_exactly_the_longest_allowed_length_is_accepted():
    assert request("2026-01-01", "2026-02-01", max_range_days=31).granularity == "day"
    assert request("2026-01-01", "2026-01-08", max_range_days=31).granularity == "day"
    with pytest.raises(QueryError) as error:
        request("2026-01-01", "2026-02-01T00:00:01Z", max_range_days=31)
    assert (error.value.error, error.value.detail) == ("range too long", "the range spans 31 days; at most 31 allowed")


def test_the_index_bounds_are_the_hours_around_the_first_and_last_window():
    on_hours = request("2026-11-01T10:00:00Z", "2026-11-01T12:00:00Z")
    assert (on_hours.first_hour_epoch, on_hours.end_hour_epoch) == (
        int(datetime(2026, 11, 1, 10, tzinfo=UTC).timestamp()), int(datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()))
    inside = request("2026-11-01T10:20:00Z", "2026-11-01T12:10:00Z")
    assert (inside.first_hour_epoch, inside.end_hour_epoch) == (
        int(datetime(2026, 11, 1, 10, tzinfo=UTC).timestamp()), int(datetime(2026, 11, 1, 13, tzinfo=UTC).timestamp()))


def test_granularity_names_arriving_as_new_strings_are_read_by_value():
    """Query parameters are decoded into fresh string objects: the rules compare them by value."""
    hour, week = "".join(["ho", "ur"]), "".join(["we", "ek"])
    hourly = request("2026-11-01T10:00:00Z", "2026-11-01T12:00:00Z", granularity=hour)
    assert hourly.bucket_keys() == [int(datetime(2026, 11, 1, h, tzinfo=UTC).timestamp()) for h in (10, 11)]
    weekly = request("2026-11-02", "2026-11-30", granularity=week)
    assert weekly.bucket_count() == 4 and weekly.bucket_keys()[-1] == date(2026, 11, 23)


def test_day_and_week_buckets_cannot_start_before_clickhouses_first_date():
    with pytest.raises(QueryError) as error:
        request("1970-01-01T00:00:00Z", "1970-01-20", "America/New_York", "day")  # 1969-12-31 19:00 local
    assert error.value.error == "out of supported range"
    assert error.value.detail == ("day buckets cannot start before 1970-01-01 in America/New_York: ClickHouse dates "
                                  "begin on 1970-01-01. This range's first day would start on 1969-12-31; start the "
                                  "range on 1970-01-01 (America/New_York) or later, or ask for hour buckets")
    with pytest.raises(QueryError) as error:
        request("1970-01-01", "1970-02-01", "UTC", "week")  # a Thursday: its week starts on Monday 1969-12-29
    assert error.value.detail.startswith("week buckets cannot start before 1970-01-05 in UTC: ClickHouse dates begin "
                                         "on 1970-01-01, and the first Monday among them is 1970-01-05. ")
    assert request("1970-01-05", "1970-02-02", "UTC", "week").bucket_keys()[0] == date(1970, 1, 5)
    assert request("1970-01-01", "1970-01-03", "UTC", "day").bucket_count() == 2


def test_a_long_hourly_range_reports_its_exact_number_of_buckets():
    with pytest.raises(QueryError) as error:
        request("2020-01-01", "2023-01-01", granularity="hour")  # 1096 days
    assert error.value.detail.startswith(f"{1096 * 24} hour buckets; at most {MAX_BUCKETS}")


def test_local_hours_over_many_lord_howe_dst_shifts_are_counted_one_by_one():
    """Up to twice the limit the count is exact even where local hours are not whole UTC hours apart. Reference:
    the distinct local (date, hour, UTC offset) of every 15-minute window, straight from zoneinfo."""
    for end, expected in (("2025-09-01", 14_618), ("2026-04-13T08:00:00+10:30", 20_003)):  # 20,000 UTC hours
        with pytest.raises(QueryError) as error:
            request("2024-01-01", end, "Australia/Lord_Howe", "hour")
        assert error.value.detail.startswith(f"{expected} hour buckets;")
        assert lord_howe_local_hours(datetime(2024, 1, 1, tzinfo=LORD_HOWE), parse_instant(end, LORD_HOWE, "to")) == expected


LORD_HOWE = ZoneInfo("Australia/Lord_Howe")


def lord_howe_local_hours(start: datetime, end: datetime) -> int:
    """The local hours of [start, end) in Lord Howe: distinct (date, hour, UTC offset) of its 15-minute windows."""
    hours = set()
    for window in range(int(start.timestamp()), int(end.timestamp()), 900):
        local = datetime.fromtimestamp(window, LORD_HOWE)
        hours.add((local.date(), local.hour, local.utcoffset()))
    return len(hours)


def test_beyond_twice_the_limit_hours_are_counted_from_the_first_and_last_buckets_utc_hours():
    """The shortcut of bucket_count: a range far beyond the limit is not walked window by window; its count is
    the whole UTC hours from its first to its last local hour (Lord Howe's 30-minute shifts make that 3 fewer
    than the local hours here, which only changes the number in the error)."""
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    first = datetime(2024, 1, 1, tzinfo=lord_howe).timestamp()
    last = datetime(2026, 5, 31, 23, tzinfo=lord_howe).timestamp()
    with pytest.raises(QueryError) as error:
        request("2024-01-01", "2026-06-01", "Australia/Lord_Howe", "hour")
    assert error.value.detail.startswith(f"{int(last - first) // 3600 + 1} hour buckets;")
    assert int(last - first) // 3600 + 1 == 21_168


def test_negative_utc_offsets_are_west_of_utc():
    assert parse_instant("2026-11-01T04:00:00-05:00", BERLIN, "to") == datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert parse_instant("2026-11-01T04:00:00-09:30", BERLIN, "to") == datetime(2026, 11, 1, 13, 30, tzinfo=UTC)


def test_instants_may_reach_2106_01_01_utc_and_not_beyond_whatever_their_offset():
    assert parse_instant("2105-12-31T23:00:00-01:00", BERLIN, "to") == datetime(2106, 1, 1, tzinfo=UTC)
    with pytest.raises(QueryError) as error:
        parse_instant("2105-12-31T23:00:00-05:00", BERLIN, "to")
    assert error.value.error == "out of supported range"


def test_at_most_ten_thousand_buckets():
    assert request("2026-01-01T00:00:00Z", "2026-04-15T04:00:00Z", granularity="quarter_hour").bucket_count() \
        == MAX_BUCKETS == 10_000  # 104 days and 4 hours of quarter hours
    with pytest.raises(QueryError) as error:
        request("2026-01-01T00:00:00Z", "2026-04-15T04:15:00Z", granularity="quarter_hour")
    assert error.value.detail.startswith("10001 quarter_hour buckets; at most 10000")


def test_month_buckets_may_start_in_clickhouses_first_month_and_are_counted_by_value():
    month = "".join(["mon", "th"])
    first = request("1970-01-01", "1970-03-01", "UTC", month)
    assert first.bucket_count() == 2 and first.bucket_keys() == [date(1970, 1, 1), date(1970, 2, 1)]


def test_bucket_rules_read_granularity_names_by_value():
    """The API hands over the granularity it decoded (a fresh string): every rule compares it by value."""
    quarter, hour, week, month = ("".join(["quarter", "_hour"]), "".join(["ho", "ur"]), "".join(["we", "ek"]),
                                  "".join(["mon", "th"]))
    sunday_noon = int(datetime(2026, 11, 8, 12, 7, tzinfo=UTC).timestamp()) // 900 * 900
    assert bucket_key(sunday_noon, quarter, BERLIN) == sunday_noon
    assert bucket_key(sunday_noon, hour, BERLIN) == sunday_noon // 3600 * 3600
    assert next_bucket(sunday_noon, quarter) == sunday_noon + 900
    assert next_bucket(date(2026, 11, 2), week) == date(2026, 11, 9)
    assert bucket_start(sunday_noon, quarter, BERLIN) == datetime(2026, 11, 8, 13, tzinfo=BERLIN)
    assert bucket_start(date(2026, 11, 2), week, BERLIN) == datetime(2026, 11, 2, tzinfo=BERLIN)
    assert bucket_start(date(2026, 11, 1), month, BERLIN) == datetime(2026, 11, 1, tzinfo=BERLIN)
    with pytest.raises(QueryError) as error:
        request("1970-01-01", "1970-02-01", "UTC", week)
    assert "and the first Monday among them is 1970-01-05" in error.value.detail


def test_bucket_counts_from_the_first_hour_and_month_and_as_whole_numbers():
    assert request("1970-01-01", "1970-01-02", "UTC", "hour").bucket_count() == 24  # the first hour's key is 0
    assert request("1970-01-01", "1972-01-02", "UTC", "month").bucket_count() == 25
    with pytest.raises(QueryError) as error:
        request("1990-01-01", "2020-01-01", "UTC", "day")
    assert error.value.detail.startswith("10957 day buckets; at most 10000")


def test_an_instant_of_the_longest_accepted_form_is_read():
    text = "2026-11-01T09:00:00.123456789+05:30"
    assert len(text) == 35
    assert parse_instant(text, BERLIN, "from") == datetime(2026, 11, 1, 3, 30, 0, 123_457, tzinfo=UTC)


def test_a_request_is_an_immutable_value():
    with pytest.raises(dataclasses.FrozenInstanceError):
        request("2026-11-01", "2026-11-02").granularity = "day"


def test_quarter_hours_and_weeks_are_counted_from_the_first_window_and_by_value():
    quarter, week = "".join(["quarter", "_hour"]), "".join(["we", "ek"])
    assert request("1970-01-01", "1970-01-01T06:00:00Z", granularity=quarter).bucket_count() == 24
    weekly = request("2026-11-02", "2026-12-28", granularity=week)
    assert weekly.bucket_count() == len(weekly.bucket_keys()) == 8


def test_month_buckets_before_1970_and_instants_before_1970_utc_are_refused():
    with pytest.raises(QueryError) as error:
        request("1970-01-01T00:00:00Z", "1970-03-01", "America/New_York", "month")  # Dec 1969 in New York
    assert error.value.error == "out of supported range" and "month buckets cannot start before" in \
        error.value.detail
    with pytest.raises(QueryError) as error:
        parse_instant("1970-01-01T00:30:00+01:00", BERLIN, "from")
    assert error.value.error == "out of supported range"


def test_december_rolls_over_to_january_of_the_next_year():
    assert [next_bucket(date(year, 12, 1), "month") for year in (2026, 2027)] == [date(2027, 1, 1), date(2028, 1, 1)]


def test_every_accepted_zone_name_is_a_zone():
    assert TIME_ZONES and all(name and not name.startswith("#") for name in TIME_ZONES)
    assert all(ZoneInfo(name) for name in TIME_ZONES)


# -- decompose: a range as whole UTC days, whole UTC hours and 15-minute windows ----------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from pipeline.usage.ranges import (ALL, TIME_ZONES, Decomposition, decompose, local_hours,  # noqa: E402
                                   offset_runs)

WINDOW, HOUR, DAY = 900, 3600, 86400
# Windows around 2026 (a few days either side of a UTC midnight is enough to meet every case).
windows = st.integers(min_value=1_790_000_000 // WINDOW, max_value=1_790_000_000 // WINDOW + 6 * 96).map(
    lambda w: w * WINDOW)


def expand(runs) -> list[int]:
    return [w for start, stop in runs for w in range(start, stop, WINDOW)]


def brute_force(first: int, end: int, cuts: list[int]) -> Decomposition:
    """Window by window: a UTC day (hour) is coarse when all of its windows are in the range and no cut falls
    strictly inside it; a window is in the coarsest unit that is."""
    inner = {c for c in cuts if first < c < end}

    def whole(unit_start: int, size: int) -> bool:
        return (first <= unit_start and unit_start + size <= end
                and not any(unit_start < c < unit_start + size for c in inner))

    grains: dict[str, list[int]] = {"windows": [], "hours": [], "days": []}
    for w in range(first, end, WINDOW):
        day, hour = w // DAY * DAY, w // HOUR * HOUR
        grain = "days" if whole(day, DAY) else "hours" if whole(hour, HOUR) else "windows"
        grains[grain].append(w)
    return Decomposition(*(tuple(_runs(grains[g])) for g in ("windows", "hours", "days")))


def _runs(ws: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for w in ws:
        if runs and runs[-1][1] == w:
            runs[-1] = (runs[-1][0], w + WINDOW)
        else:
            runs.append((w, w + WINDOW))
    return runs


@settings(max_examples=400, deadline=None)
@given(windows, windows, st.lists(windows, max_size=6))
def test_decompose_equals_the_window_by_window_brute_force(a, b, cuts):
    first, end = min(a, b), max(a, b)
    got = decompose(first, end, cuts)
    assert got == brute_force(first, end, cuts)
    covered = expand(got.windows) + expand(got.hours) + expand(got.days)
    assert sorted(covered) == list(range(first, end, WINDOW))  # every window once
    assert all(s % HOUR == 0 and e % HOUR == 0 for s, e in got.hours)
    assert all(s % DAY == 0 and e % DAY == 0 for s, e in got.days)


def test_decompose_a_year_in_utc_is_days_and_edge_windows():
    first, end = 1_764_547_200 + 45 * 60, 1_796_083_200 + 30 * 60  # 2025-12-01T00:45Z .. 2026-12-01T00:30Z
    got = decompose(first, end)
    assert got.days == ((1_764_547_200 + DAY, 1_796_083_200),)
    assert got.hours == ((1_764_547_200 + HOUR, 1_764_547_200 + DAY),)
    assert got.windows == ((first, 1_764_547_200 + HOUR), (1_796_083_200, end))


def test_a_cut_inside_an_hour_keeps_that_hour_fine_grained():
    """Kolkata's midnight is 18:30 UTC: the UTC hour 18:00 holds windows of two local days."""
    first, end = 1_790_000_000 // DAY * DAY, 1_790_000_000 // DAY * DAY + 2 * DAY
    cut = first + 18 * HOUR + 30 * 60
    got = decompose(first, end, [cut])
    assert (first + 18 * HOUR, first + 19 * HOUR) in got.windows
    assert got.days == ((first + DAY, end),)


def test_decompose_refuses_instants_off_the_window_grid():
    with pytest.raises(ValueError):
        decompose(1_790_000_000, 1_790_000_000 + 7 * WINDOW)  # 1_790_000_000 is not a window start
    with pytest.raises(ValueError):
        decompose(1_789_999_200 + WINDOW, 1_789_999_200)


# -- local hours from the zone's offset runs: equal to bucket_key window by window ---------------------------

ZONES_TO_CHECK = ["UTC", "Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
                  "Australia/Eucla", "America/St_Johns", "Pacific/Chatham", "America/New_York"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ZONES_TO_CHECK), st.integers(0, 4 * 365 * 96), st.integers(1, 3 * 96))
def test_local_hours_equal_bucket_key_window_by_window(tz, offset_windows, length):
    zone = ZoneInfo(tz)
    first = 1_704_067_200 + offset_windows * WINDOW  # from 2024-01-01 on, over four years of DST shifts
    end = first + length * WINDOW
    got = local_hours(zone, first, end)
    keys = []
    for w in range(first, end, WINDOW):
        key = bucket_key(w, "hour", zone)
        if not keys or keys[-1] != key:
            keys.append(key)
    assert [key for key, _ in got] == keys
    for key, start in got:  # the start is the hour's first window, as bucket_start says
        assert datetime.fromtimestamp(start, zone) == bucket_start(key, "hour", zone)


@pytest.mark.parametrize("tz", ["Australia/Lord_Howe", "Europe/Berlin", "Asia/Kolkata"])
def test_hourly_buckets_of_a_year_are_computed_from_offset_runs(tz):
    r = request("2025-12-01", "2026-12-01", tz, "hour")
    zone = r.zone
    keys = []
    for w in range(r.first_window_epoch, r.end_window_epoch, WINDOW):
        key = bucket_key(w, "hour", zone)
        if not keys or keys[-1] != key:
            keys.append(key)
    assert r.bucket_keys() == keys and r.bucket_count() == len(keys)
    starts = r.bucket_starts()
    assert list(starts) == keys
    assert all(starts[k] == bucket_start(k, "hour", zone) for k in keys[:50] + keys[-50:])


def test_offset_runs_find_each_change_at_its_window():
    zone = ZoneInfo("Australia/Lord_Howe")  # +11:00 -> +10:30 on 2026-04-05 at 02:00 local (15:00 UTC)
    first, end = 1_775_000_000 // DAY * DAY, 1_775_000_000 // DAY * DAY + 6 * DAY
    runs = offset_runs(zone, first, end)
    assert [r[2] for r in runs] == [39600, 37800]
    change = runs[0][1]
    assert datetime.fromtimestamp(change - WINDOW, zone).utcoffset().total_seconds() == 39600
    assert datetime.fromtimestamp(change, zone).utcoffset().total_seconds() == 37800
    assert runs[0][0] == first and runs[-1][1] == end


def _offset_changes(name: str, until: int) -> list[int]:
    """UTC instants at which zoneinfo changes the zone's offset, from its transition table and, beyond it, its
    POSIX rule (read through CPython's pure-Python zoneinfo, which exposes both)."""
    from zoneinfo import _zoneinfo
    zone = _zoneinfo.ZoneInfo.no_cache(name)
    changes, previous = [], getattr(zone, "_ttinfo_before", None)
    previous = previous and previous.utcoff
    for instant, info in zip(zone._trans_utc, zone._ttinfos):
        if previous is not None and info.utcoff != previous:
            changes.append(instant)
        previous = info.utcoff
    rule = zone._tz_after
    if isinstance(rule, _zoneinfo._TZStr):
        last_year = datetime.fromtimestamp(max(zone._trans_utc[-1:] or [0]), UTC).year
        for year in range(last_year, datetime.fromtimestamp(until, UTC).year + 1):
            start, end = rule.transitions(year)
            changes += [start - int(rule.std.utcoff.total_seconds()), end - int(rule.dst.utcoff.total_seconds())]
    return sorted({c for c in changes if c <= until})


def test_no_accepted_zone_changes_its_offset_twice_within_a_day():
    """offset_runs reads offsets once per UTC day and bisects between two readings that differ: every accepted
    zone must change its offset at most once per day (1970..2106). (A change need not fall on a window start,
    e.g. America/Goose_Bay's 00:01 changes of 1987-1993: a window has the offset of its start, and the bisection
    finds the first window whose start reads the new one.)"""
    pytest.importorskip("zoneinfo._zoneinfo")
    until = 4_291_747_200
    too_close = []
    for name in TIME_ZONES:
        changes = [c for c in _offset_changes(name, until) if c >= 0]
        too_close += [(name, a) for a, b in zip(changes, changes[1:]) if b - a < DAY]
    assert not too_close, too_close[:10]


def test_scope_all_takes_no_id_and_the_others_need_one():
    assert parse_request(ALL, None, "2026-11-01", "2026-11-02").scope_id == ""
    assert parse_request(ALL, "", "2026-11-01", "2026-11-02").scope == ALL
    with pytest.raises(QueryError) as error:
        parse_request(ALL, "k", "2026-11-01", "2026-11-02")
    assert error.value.error == "unexpected 'id'"
    with pytest.raises(QueryError) as error:
        parse_request("org", None, "2026-11-01", "2026-11-02")
    assert error.value.error == "missing 'id'"


# ---- the previous period: the same local length just before `from` -----------------------------------------

def real_hours(start: datetime, end: datetime) -> float:
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


@pytest.mark.parametrize("start,end,tz,previous,hours", [
    # whole local days: the same number of calendar days, whatever their real length
    ("2026-10-26", "2026-11-02", "Europe/Berlin", ("2026-10-19T00:00:00+02:00", "2026-10-26T00:00:00+01:00"), 169),
    ("2026-10-19", "2026-10-26", "Europe/Berlin", ("2026-10-12T00:00:00+02:00", "2026-10-19T00:00:00+02:00"), 168),
    ("2026-03-30", "2026-04-06", "Europe/Berlin", ("2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"), 167),
    ("2026-11-01", "2026-12-01", "Europe/Berlin", ("2026-10-02T00:00:00+02:00", "2026-11-01T00:00:00+01:00"),
     30 * 24 + 1),  # 30 local days, not "October"
    # 24 real hours ending after the change are 23 wall-clock hours in Berlin: the previous period is 23 h too
    ("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z", "Europe/Berlin",
     ("2026-10-23T15:00:00+02:00", "2026-10-24T14:00:00+02:00"), 23),
    ("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z", "UTC",
     ("2026-10-23T12:00:00+00:00", "2026-10-24T12:00:00+00:00"), 24),
    # a start at a wall time skipped by the spring change (02:30 on 2026-03-29) reads with the offset before it
    ("2026-03-29T04:30:00+02:00", "2026-03-29T06:30:00+02:00", "Europe/Berlin",
     ("2026-03-29T03:30:00+02:00", "2026-03-29T04:30:00+02:00"), 1),
    # a start at a wall time that occurs twice (02:30 on 2026-10-25) is its first occurrence
    ("2026-10-25T03:30:00+01:00", "2026-10-25T04:30:00+01:00", "Europe/Berlin",
     ("2026-10-25T02:30:00+02:00", "2026-10-25T03:30:00+01:00"), 2),
    ("1970-01-02", "1970-01-03", "UTC", ("1970-01-01T00:00:00+00:00", "1970-01-02T00:00:00+00:00"), 24),
])
def test_the_previous_period_has_the_same_local_length_and_ends_at_from(start, end, tz, previous, hours):
    current = request(start, end, tz)
    before = previous_period(current)
    assert (before.start.isoformat(), before.end.isoformat()) == previous
    assert before.end == current.start and real_hours(before.start, before.end) == hours
    assert (before.scope, before.scope_id, before.tz, before.granularity) == ("key", "k", tz, current.granularity)


def test_there_is_no_previous_period_before_1970():
    assert previous_period(request("1970-01-01", "1970-01-03")) is None
    assert previous_period(request("1970-01-01T12:00:00Z", "1970-01-02T12:00:00Z")) is None
