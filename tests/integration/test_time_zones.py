"""Every time zone the usage API accepts works in both halves of an answer: Python's zoneinfo (range and
bucket bounds, labels) and ClickHouse (the buckets themselves), run through the real queries on real chDB."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

import pytest

from pipeline.usage.ranges import TIME_ZONES, parse_request
from support.time_zones import COARSE_STEP_S, clickhouse_zones, disagreement
from test_query import select, store  # noqa: F401  (the seeded module fixture)

pytestmark = pytest.mark.clickhouse


def test_every_accepted_zone_is_known_to_zoneinfo_and_clickhouse_and_read_alike(store):  # noqa: F811
    assert len(TIME_ZONES) > 500 and list(TIME_ZONES) == sorted(set(TIME_ZONES))
    assert {"UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York"} <= set(TIME_ZONES)
    unknown_to_python = set(TIME_ZONES) - zoneinfo.available_timezones()
    unknown_to_clickhouse = set(TIME_ZONES) - clickhouse_zones(store.client)
    assert not unknown_to_python and not unknown_to_clickhouse
    read_differently = {zone: datetime.fromtimestamp(when[0]).isoformat() for zone in TIME_ZONES
                        if (when := disagreement(store.client, zone, COARSE_STEP_S))}
    assert not read_differently, ("zoneinfo and ClickHouse give these zones different UTC offsets (first at): "
                                  f"{read_differently}; regenerate pipeline/usage/time_zones.txt "
                                  "(tests/support/time_zones.py)")


def test_every_accepted_zone_answers_the_real_queries(store):  # noqa: F811
    """Buckets of every granularity in each zone: the zero-filled series has exactly the buckets Python
    expects, and they (and the peak hours of every fourth zone) hold exactly the range's requests (the
    ledger's count)."""
    granularities = ("day", "week", "month", "hour")
    for i, zone in enumerate(TIME_ZONES):
        granularity = granularities[i % len(granularities)]  # each zone once, the granularities in turn
        request = parse_request("key", "key-a", "2026-10-19", "2026-11-16" if granularity != "hour" else "2026-10-26",
                                zone, granularity)
        series = store.queries.series(request)
        assert len(series.buckets) == request.bucket_count(), zone
        total = len(select(store.ledger, "key", "key-a", request.start, request.end))
        assert sum(b.requests for b in series.buckets) == total > 0, zone
        if i % 4 == 0:  # toHour(hour, tz): the same zone handling as the buckets, so a sample of zones suffices
            assert sum(h.requests for h in store.queries.peak_hours(request).hours) == total, zone
