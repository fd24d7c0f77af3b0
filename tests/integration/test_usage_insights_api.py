"""The API's insight routes over the seeded store of test_query on real chDB, each against the plain-Python ledger
of the events written (never against the query module itself): the previous period (compare) across DST, the
month to date with its projection (the budgets' rule, recomputed with exact fractions), the busiest keys, and a
key's spike alerts from alert_state; who may read each of them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.alerts.model import FIRING, RESOLVED, AlertKey
from pipeline.alerts.state import COLUMNS, AlertRecord
from pipeline.clickhouse import ClickHouse, connect
from pipeline.usage.api import create_api_app
from pipeline.usage.query import UsageQueries
from pipeline.usage.tokens import issue_key_token
from support.budgets import reference_projection
from test_api import ADMIN, SECRET, SETTINGS, get
from test_query import KEYS, NOW, Priced, select, store, sums  # noqa: F401  (the seeded module fixture)

pytestmark = pytest.mark.clickhouse

BERLIN = ZoneInfo("Europe/Berlin")
KEY_A = issue_key_token(SECRET, "key-a")


@pytest.fixture
async def api(store):  # noqa: F811
    reader = ClickHouse(connect(store.url))
    server = TestServer(create_api_app(UsageQueries(reader.client), reader.run, SETTINGS, clock=lambda: NOW))
    await server.start_server(access_log=None)
    async with TestClient(server) as client:
        yield client
    reader.close()


async def body_of(response, status: int = 200) -> dict:
    assert response.status == status, await response.text()
    return await response.json()


def ledger_totals(store, key: str, start: datetime, end: datetime) -> dict:  # noqa: F811
    return sums(select(store.ledger, "key", key, start, end))


def change(body: dict) -> tuple:
    """A Change as numbers: decimals arrive as text without trailing zeros."""
    return tuple(None if body[k] is None else Decimal(str(body[k])) for k in ("difference", "relative"))


def relative(current, previous) -> Decimal | None:
    """(current - previous) / previous, exactly, then rounded half-even to 4 places; None without a previous."""
    if not previous:
        return None
    change = (Fraction(current) - Fraction(previous)) / Fraction(previous)
    with localcontext() as context:
        context.prec = 60
        return (Decimal(change.numerator) / Decimal(change.denominator)).quantize(
            Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


# ---- compare: the range and its previous period ---------------------------------------------------------

@pytest.mark.parametrize("from_,to,previous", [
    # a Berlin week whose last Sunday has 25 hours; the week before has 168
    ("2026-10-26", "2026-11-02", (datetime(2026, 10, 19, tzinfo=BERLIN), datetime(2026, 10, 26, tzinfo=BERLIN))),
    # 24 real hours over the change are 23 wall-clock hours in Berlin: so is the previous period
    ("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z",
     (datetime(2026, 10, 23, 13, tzinfo=UTC), datetime(2026, 10, 24, 12, tzinfo=UTC))),
])
async def test_compare_sets_the_range_beside_its_previous_period_of_the_same_local_length(api, store, from_, to,
                                                                                         previous):  # noqa: F811
    body = await body_of(await get(api, "compare", scope="key", id="key-a", tz="Europe/Berlin",
                                   **{"from": from_, "to": to}))
    start = datetime.fromisoformat(body["request"]["start"])
    end = datetime.fromisoformat(body["request"]["end"])
    before = (datetime.fromisoformat(body["previous_request"]["start"]),
              datetime.fromisoformat(body["previous_request"]["end"]))
    assert before == previous and before[1] == start
    current, earlier = ledger_totals(store, "key-a", start, end), ledger_totals(store, "key-a", *previous)
    assert earlier["requests"] > 0 and current["requests"] > 0
    for name in ("requests", "input_tokens", "output_tokens", "total_tokens", "cache_read_tokens",
                 "cache_write_tokens", "reasoning_tokens", "error_requests"):
        assert (body["totals"][name], body["previous_totals"][name]) == (current[name], earlier[name]), name
        assert isinstance(body["changes"][name]["difference"], int)
        assert change(body["changes"][name]) == (current[name] - earlier[name],
                                                 relative(current[name], earlier[name])), name
    cost, cost_before = Decimal(body["totals"]["total_cost"]), Decimal(body["previous_totals"]["total_cost"])
    assert (cost, cost_before) == (current["total_cost"], earlier["total_cost"])
    assert change(body["changes"]["total_cost"]) == (cost - cost_before, relative(cost, cost_before))
    average = Decimal(body["totals"]["avg_tokens_per_request"]) - Decimal(body["previous_totals"]["avg_tokens_per_request"])
    assert Decimal(body["changes"]["avg_tokens_per_request"]["difference"]) == average
    assert body["status"]["state"] == body["previous_status"]["state"] == "usage"
    summary = await body_of(await get(api, "summary", scope="key", id="key-a", tz="Europe/Berlin",
                                      **{"from": from_, "to": to}))
    assert body["freshness"] == summary["freshness"] and body["freshness"]["lateness_bound_s"] == 7 * 86400


async def test_compare_says_when_the_previous_period_is_empty_or_does_not_exist(api, store):  # noqa: F811
    # key-c stopped on 2026-10-22: nothing in the range; key-a has nothing before 2026-10-20.
    body = await body_of(await get(api, "compare", scope="key", id="key-a", **{"from": "2026-10-20",
                                                                             "to": "2026-10-22"}))
    assert body["previous_status"]["state"] == "no_requests_in_period" and body["previous_totals"]["requests"] == 0
    assert body["changes"]["requests"] == {"difference": body["totals"]["requests"], "relative": None}
    assert body["changes"]["avg_tokens_per_request"] == {"difference": None, "relative": None}
    body = await body_of(await get(api, "compare", scope="key", id="key-a", **{"from": "1970-01-01",
                                                                             "to": "1970-01-02"}))
    assert body["previous_request"] is None and body["previous_totals"] is None
    assert body["changes"]["requests"] == {"difference": None, "relative": None}


async def test_empty_buckets_carry_money_as_decimal_text_like_the_others(api):
    """The series fills buckets without usage; their cost is "0", a decimal string as documented, never the JSON
    number 0 (the page formats money from the text, and the OpenAPI document says string)."""
    body = await body_of(await get(api, "series", scope="key", id="key-a", **{"from": "2026-10-10",
                                                                            "to": "2026-10-25"}))
    costs = [bucket["total_cost"] for bucket in body["buckets"]]
    assert costs[0] == "0" and costs[-1] != "0" and all(isinstance(cost, str) for cost in costs)


# ---- month to date ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tz", ["Europe/Berlin", "UTC", "Asia/Tokyo"])
async def test_month_to_date_projects_the_month_end_with_the_budgets_rule(api, store, tz):  # noqa: F811
    body = await body_of(await get(api, "month-to-date", scope="key", id="key-a", tz=tz))
    zone = ZoneInfo(tz)
    month_start = datetime(2026, 11, 1, tzinfo=zone)
    month_end = datetime(2026, 12, 1, tzinfo=zone)
    assert (datetime.fromisoformat(body["month_start"]), datetime.fromisoformat(body["month_end"])) == (
        month_start, month_end)
    assert datetime.fromisoformat(body["as_of"]) == NOW and body["trend_days"] == 7
    assert set(body["freshness"]) == {"counted_through", "lateness_bound_s"}
    spent = ledger_totals(store, "key-a", month_start, NOW)["total_cost"]
    assert Decimal(body["spent_usd"]) == spent > 0
    # The trend window: from local midnight 7 days before today (NOW is on 2026-11-10 in all three zones), moved
    # to its first day with spend (key-a spends every day of it), to now.
    since = datetime(2026, 11, 3, tzinfo=zone)
    trend = ledger_totals(store, "key-a", since, NOW)["total_cost"]
    assert datetime.fromisoformat(body["trend_since"]) == since and Decimal(body["trend_spend_usd"]) == trend
    expected = reference_projection(spent, Decimal(10**9), trend, since, NOW, month_end)
    assert (Decimal(body["daily_rate_usd"]), Decimal(body["projected_usd"])) == (
        expected.daily_rate_usd, expected.projected_usd)


async def test_month_to_date_of_an_org_and_who_may_read_it(api, store):  # noqa: F811
    body = await body_of(await get(api, "month-to-date", scope="org", id="org-2"))  # key-c: idle since October
    assert (Decimal(body["spent_usd"]), Decimal(body["projected_usd"]), Decimal(body["daily_rate_usd"])) == (0, 0, 0)
    await body_of(await get(api, "month-to-date", KEY_A, scope="key", id="key-a"))
    for scope, scope_id in (("key", "key-b"), ("org", "org-1")):
        refused = await body_of(await get(api, "month-to-date", KEY_A, scope=scope, id=scope_id), 403)
        assert refused["error"] == "forbidden"
    assert (await get(api, "month-to-date", None, scope="key", id="key-a")).status == 401
    bad = await body_of(await get(api, "month-to-date", scope="key", id="key-a", tz="Mars/Olympus"), 400)
    assert bad["error"] == "unknown time zone"
    bad = await body_of(await get(api, "month-to-date", scope="key", id="key-a", **{"from": "2026-11-01"}), 400)
    assert bad["error"] == "unknown parameter"


# ---- the busiest keys ------------------------------------------------------------------------------------

async def test_busiest_keys_rank_every_key_by_requests_in_the_range(api, store):  # noqa: F811
    params = {"from": "2026-10-20", "to": "2026-10-23", "tz": "Europe/Berlin"}
    body = await body_of(await get(api, "busiest-keys", **params))
    start, end = datetime(2026, 10, 20, tzinfo=BERLIN), datetime(2026, 10, 23, tzinfo=BERLIN)
    truth = {key: ledger_totals(store, key, start, end) for key in KEYS}
    ranked = sorted((key for key in truth if truth[key]["requests"]),
                    key=lambda k: (-truth[k]["requests"], -truth[k]["total_tokens"], -truth[k]["total_cost"], k))
    assert [k["api_key_id"] for k in body["keys"]] == ranked and len(ranked) == 3
    for row in body["keys"]:
        t = truth[row["api_key_id"]]
        assert (row["requests"], row["total_tokens"], Decimal(row["total_cost"])) == (
            t["requests"], t["total_tokens"], t["total_cost"])
    assert body["limit"] == 10 and body["tz"] == "Europe/Berlin" and "counted_through" in body["freshness"]
    one = await body_of(await get(api, "busiest-keys", limit="1", **params))
    assert [k["api_key_id"] for k in one["keys"]] == ranked[:1]
    # key-c stopped on 2026-10-22: a later range ranks only the others
    later = await body_of(await get(api, "busiest-keys", **{**params, "from": "2026-11-01", "to": "2026-11-08"}))
    assert {k["api_key_id"] for k in later["keys"]} == {"key-a", "key-b"}


async def test_busiest_keys_are_for_the_admin_and_keep_the_range_rules(api):
    params = {"from": "2026-10-20", "to": "2026-10-23"}
    refused = await body_of(await get(api, "busiest-keys", KEY_A, **params), 403)
    assert refused["error"] == "forbidden" and "admin" in refused["detail"]
    for bad, error in (({"from": "2026-10-23", "to": "2026-10-20"}, "empty range"),
                       ({"from": "2024-01-01", "to": "2026-10-20"}, "range too long"),
                       ({**params, "limit": "101"}, "bad 'limit'"), ({**params, "limit": "0"}, "bad 'limit'"),
                       ({**params, "scope": "key"}, "unknown parameter")):
        assert (await body_of(await get(api, "busiest-keys", **bad), 400))["error"] == error, bad


# ---- a key's spike alerts --------------------------------------------------------------------------------

def alert(key: str, model: str, metric: str, opened: datetime, resolved: datetime | None, version: int = 1,
          value: float = 1200.0) -> AlertRecord:
    return AlertRecord(AlertKey(key, model, metric), RESOLVED if resolved else FIRING, "warning", "baseline",
                       f"{metric} of {key} ({model}) at {value:g}/h, above 300/h", opened, resolved,
                       resolved or opened, value, 300.0, 80.0, value * 1.5, 0, {"webhook": "firing"},
                       {"webhook": opened}, version)


@pytest.fixture
def spike_alerts(store):  # noqa: F811
    """Alerts in alert_state as the runner writes them (every change a new version, read with FINAL)."""
    at = lambda day, hour: datetime(2026, 11, day, hour, tzinfo=UTC)  # noqa: E731
    records = [
        alert("key-a", "*", "tokens", at(3, 10), at(3, 13)),  # resolved inside the range
        alert("key-a", "gpt-4o", "cost", at(5, 9), None, version=1),  # open since Nov 5 ...
        alert("key-a", "gpt-4o", "cost", at(5, 9), None, version=2, value=2500.0),  # ... seen again, still open
        alert("key-a", "*", "requests", at(1, 8), at(3, 2)),  # opened before the range, resolved in it
        alert("key-a", "claude-sonnet-4-5", "tokens", at(1, 8), at(1, 9)),  # over before the range
        alert("key-a", "gemini-2.5-pro", "requests", at(9, 20), None),  # opened after the range
        alert("key-b", "*", "tokens", at(4, 10), None),  # another key's
    ]
    store.client.insert("alert_state", [r.row() for r in records], column_names=COLUMNS)
    yield records
    store.client.command("TRUNCATE TABLE alert_state")


async def test_a_keys_alerts_overlapping_the_range_open_and_resolved(api, spike_alerts):
    params = {"key": "key-a", "from": "2026-11-02", "to": "2026-11-09", "tz": "Europe/Berlin"}
    for token in (ADMIN, KEY_A):
        body = await body_of(await get(api, "alerts", token, **params))
        found = [(a["model"], a["metric"], a["status"]) for a in body["alerts"]]
        assert found == [("*", "requests", "resolved"), ("*", "tokens", "resolved"), ("gpt-4o", "cost", "firing")]
    tokens, cost = body["alerts"][1], body["alerts"][2]
    assert datetime.fromisoformat(tokens["opened_at"]) == datetime(2026, 11, 3, 10, tzinfo=UTC)
    assert datetime.fromisoformat(tokens["resolved_at"]) == datetime(2026, 11, 3, 13, tzinfo=UTC)
    assert (tokens["value"], tokens["threshold"], tokens["baseline"], tokens["peak"], tokens["rule"]) == (
        1200.0, 300.0, 80.0, 1800.0, "baseline")
    assert cost["resolved_at"] is None and cost["value"] == 2500.0  # the latest version
    assert "delivered" not in cost  # what channels were told stays inside
    assert body["request"]["scope_id"] == "key-a"
    quiet = await body_of(await get(api, "alerts", **{**params, "key": "key-c"}))
    assert quiet["alerts"] == []


async def test_only_the_admin_or_the_keys_own_token_lists_its_alerts(api, spike_alerts):
    params = {"from": "2026-11-02", "to": "2026-11-09"}
    refused = await body_of(await get(api, "alerts", KEY_A, key="key-b", **params), 403)
    assert refused["error"] == "forbidden"
    assert (await get(api, "alerts", None, key="key-a", **params)).status == 401
    assert (await get(api, "alerts", "wrong-token", key="key-a", **params)).status == 401
    for bad, error in (({"key": "key\x00a", **params}, "bad 'key'"), ({**params}, "missing 'key'"),
                       ({"key": "key-a", "from": "2026-11-09", "to": "2026-11-02"}, "empty range"),
                       ({"scope": "key", "id": "key-a", **params}, "unknown parameter")):
        assert (await body_of(await get(api, "alerts", **bad), 400))["error"] == error, bad
