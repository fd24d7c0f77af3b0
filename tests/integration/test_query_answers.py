"""The usage view's answers around their edges on real chDB, with a handful of events written as the worker writes
them: how fresh the numbers are, the key list and its cut, a range holding a single request, the types of an empty
series bucket, and whose spike alerts there are."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pipeline.alerts.model import FIRING, AlertKey
from pipeline.alerts.state import COLUMNS, AlertRecord
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.sink import RollupWriter
from pipeline.usage.query import Freshness, UsageQueries
from pipeline.usage.ranges import parse_request
from support.writes import WEEK_S, write_events

pytestmark = pytest.mark.clickhouse

NOW_MS = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp() * 1000)
AT = datetime(2026, 11, 9, 10, 7, tzinfo=UTC)


def event(n: int, key: str, org: str = "org-1") -> dict:
    return {"request_id": f"a-{n}", "api_key_id": key, "org_id": org, "model": "gpt-4o", "provider": "openai",
            "timestamp": int(AT.timestamp() * 1000) + n, "input_tokens": 10, "output_tokens": 5}


def test_freshness_is_the_least_instant_counted_through_on_any_partition(clickhouse):
    queries = UsageQueries(clickhouse)
    assert queries.freshness() == Freshness(None, 7 * 86400)  # nothing counted yet; METERLINE_MAX_LATENESS's default
    write_events(clickhouse, [event(1, "key-a")], NOW_MS, partition=0)  # a flush that claims no instant (0)
    write_events(clickhouse, [event(2, "key-a")], NOW_MS, partition=1)
    assert queries.freshness() == Freshness(None, 7 * 86400)
    writer = RollupWriter(clickhouse, "usage", WEEK_S, Failpoints())
    assert writer.record_freshness(0, 0, NOW_MS - 5000) and writer.record_freshness(1, 0, NOW_MS - 2000)
    assert queries.freshness() == Freshness(datetime.fromtimestamp((NOW_MS - 5000) / 1000, UTC), 7 * 86400)
    assert UsageQueries(clickhouse, "usage", 3600).freshness() == Freshness(
        datetime.fromtimestamp((NOW_MS - 5000) / 1000, UTC), 3600)
    assert UsageQueries(clickhouse, "other-topic").freshness() == Freshness(None, 7 * 86400)


def test_the_key_list_is_cut_at_its_limit_and_says_so(clickhouse):
    write_events(clickhouse, [event(n, key) for n, key in enumerate(["key-a", "key-b", "key-c", "other"])], NOW_MS)
    queries = UsageQueries(clickhouse)
    answers = {limit: queries.keys("key-", limit) for limit in (1, 2, 3, 4)}
    assert [(a.truncated, a.keys) for a in answers.values()] == [
        (True, ("key-a",)), (True, ("key-a", "key-b")), (False, ("key-a", "key-b", "key-c")),
        (False, ("key-a", "key-b", "key-c"))]
    assert (answers[2].prefix, answers[2].limit) == ("key-", 2)


def test_a_range_holding_a_single_request_has_usage(clickhouse):
    write_events(clickhouse, [event(1, "key-a")], NOW_MS)
    summary = UsageQueries(clickhouse).summary(parse_request("key", "key-a", "2026-11-09", "2026-11-10", "UTC", None))
    assert (summary.totals.requests, summary.status.state) == (1, "usage")


def test_an_empty_bucket_holds_decimal_money_and_integer_counts(clickhouse):
    write_events(clickhouse, [event(1, "key-a")], NOW_MS)
    series = UsageQueries(clickhouse).series(parse_request("key", "key-a", "2026-11-08", "2026-11-10", "UTC", "day"))
    empty, used = series.buckets
    assert (empty.requests, empty.error_requests, empty.input_tokens, empty.output_tokens, empty.total_tokens) \
        == (0, 0, 0, 0, 0)
    assert all(type(value) is int for value in (empty.requests, empty.error_requests, empty.input_tokens,
                                                empty.output_tokens, empty.total_tokens))
    assert type(empty.total_cost) is Decimal and empty.total_cost == 0
    assert (used.requests, used.total_tokens) == (1, 15)


def test_only_keys_have_spike_alerts_even_where_an_org_has_a_keys_id(clickhouse):
    opened = datetime(2026, 11, 9, 11, tzinfo=UTC)
    record = AlertRecord(AlertKey("shared-id", "*", "tokens"), FIRING, "warning", "baseline", "tokens at 900/h",
                         opened, None, opened, 900.0, 900.0, 300.0, 80.0, 0, {}, {}, 1)
    clickhouse.insert("alert_state", [record.row()], column_names=COLUMNS)
    queries = UsageQueries(clickhouse)
    as_key = queries.alerts(parse_request("key", "shared-id", "2026-11-09", "2026-11-10", "UTC", None))
    assert [(a.model, a.metric, a.status, a.opened_at) for a in as_key.alerts] == [("*", "tokens", FIRING, opened)]
    as_org = queries.alerts(parse_request("org", "shared-id", "2026-11-09", "2026-11-10", "UTC", None))
    assert as_org.alerts == () and as_org.request.scope == "org"
