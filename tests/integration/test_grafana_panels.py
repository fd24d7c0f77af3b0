"""Every ClickHouse query of the Grafana "API key usage" dashboard, with its macros expanded the way the
grafana-clickhouse-datasource plugin expands them, run on embedded ClickHouse over the store seeded by
test_query (4000 events through the real writer): the numbers equal what pipeline.usage.query answers.

Panels are enumerated from the committed JSON, so a panel without a check here fails (add one to CHECKS).

How the plugin turns a panel's rawSql into SQL (read in grafana/clickhouse-datasource):

* frontend, src/data/CHDatasource.ts ``applyTemplateVariables``: first ``applyConditionalAll`` replaces
  ``$__conditionalAll(cond, $v)`` by ``cond``, or by ``1=1`` when ``$v``'s current value is '' or ``$__all``;
  then Grafana's template service replaces variables. ``${v:percentencode}`` is Grafana's formatter
  (@grafana/scenes formatRegistry, encodeURIComponentStrict): JavaScript's encodeURIComponent plus ``!'()*``,
  leaving only letters, digits and ``-_.~``; the panels decode it in ClickHouse (``decodeURLComponent``). A bare
  ``$v`` goes through the plugin's own ``format``, which quotes only multi-value arrays: a single value is pasted
  raw, so the dashboards never use it (``expand`` below refuses it, and every other format).
* backend, pkg/macros/macros.go (macro table run by grafana/sqlds), times as Go ``t.Unix()`` (whole seconds):
  ``$__timeFilter(c)`` -> ``c >= toDateTime(from) AND c <= toDateTime(to)`` (``to`` inclusive),
  ``$__fromTime`` / ``$__toTime`` -> ``toDateTime(s)``,
  ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL n second)`` and ``$__interval_s`` -> ``n``,
  with ``n = max(interval seconds, 1)``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pipeline.devtools.dashboards import variable
from pipeline.usage.ranges import parse_request
from support.grafana import (ALL, CLICKHOUSE_UID, DASHBOARD, backend_macros, clickhouse_panels, conditional_all,
                             expand, panel_sql, template_variables, variable_sql)
from test_query import store  # noqa: F401  (the seeded module fixture)

pytestmark = pytest.mark.clickhouse


def test_the_expansion_matches_the_plugin_on_its_documented_examples():
    start, end = utc(2026, 10, 21), utc(2026, 10, 22)
    assert backend_macros("$__timeFilter(hour)", start, end, 60) == (
        "hour >= toDateTime(1792540800) AND hour <= toDateTime(1792627200)")
    assert backend_macros("$__timeInterval(hour) $__interval_s", start, end, 0) == (
        "toStartOfInterval(toDateTime(hour), INTERVAL 1 second) 1")
    assert conditional_all("a AND $__conditionalAll(f(x, y) = ${v:percentencode}, $v)", {"v": ALL}) == "a AND 1=1"
    assert conditional_all("$__conditionalAll(x IN (${v:csv}), ${v})", {"v": "q"}) == "x IN (${v:csv})"
    assert template_variables("k = '${k:percentencode}'", {"k": "it's a\\ ü!"}) == "k = 'it%27s%20a%5C%20%C3%BC%21'"
    with pytest.raises(AssertionError):
        template_variables("k = '$k'", {"k": "x"})


# --- the dashboard's panels ---------------------------------------------------------------------------------

def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def epoch(value: datetime) -> int:
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())


# (key, from, to): aligned days over key-a's idle gap, 48 aligned hours, a range off the hour at both ends,
# and a key with no usage in its range (the "No usage data" state).
RANGES = [
    ("key-a", utc(2026, 10, 21), utc(2026, 11, 5)),
    ("key-a", utc(2026, 10, 27, 12), utc(2026, 10, 29, 12)),
    ("key-b", utc(2026, 10, 21, 10, 30, 15), utc(2026, 10, 23, 7, 45)),
    ("key-c", utc(2026, 11, 1), utc(2026, 11, 8)),
]
RANGE_IDS = ["days", "hours", "off-the-hour", "no-usage"]
# With key "All", the panels read the chosen org or project, or every key (both "All").
OTHER_SCOPES = [("org", "org-1"), ("project", "proj-y"), ("all", None), ("org", "org-2")]
# (scope, id, from, to): the key ranges, then each other scope over the same ranges (org-2 only holds key-c, so its
# last range is empty too).
CASES = ([("key", key, start, end) for key, start, end in RANGES]
         + [(scope, scope_id, start, end) for scope, scope_id in OTHER_SCOPES for _, start, end in RANGES
            if scope_id != "org-2" or start == RANGES[-1][1]])
CASE_IDS = ([f"key-{i}" for i in RANGE_IDS]
            + [f"{scope}-{i}" for scope, scope_id in OTHER_SCOPES for (_, start, _), i in zip(RANGES, RANGE_IDS)
               if scope_id != "org-2" or start == RANGES[-1][1]])


def variables(scope: str, scope_id: str | None) -> dict[str, str]:
    """The dashboard's variables that pick a scope: a key, or key All with an org, a project, or neither."""
    chosen = {"key": ALL, "org": ALL, "project": ALL}
    if scope != "all":
        chosen[scope] = scope_id
    return chosen


def run(store, sql: str) -> list[tuple]:  # noqa: F811
    return store.client.query(sql).result_rows


def request(scope: str, scope_id: str | None, start: datetime, end: datetime, granularity: str | None = None):
    return parse_request(scope, scope_id, start.isoformat(), end.isoformat(), "UTC", granularity)


# Each check gets the panel's rawSql and one (scope, id, from, to) case.
def check_stat(field: str):
    def check(store, sql, scope, scope_id, start, end):  # noqa: F811
        rows = run(store, expand(sql, start, end, **variables(scope, scope_id)))
        summary = store.queries.summary(request(scope, scope_id, start, end))
        if summary.status.has_usage:
            assert rows == [(getattr(summary.totals, field),)]
        else:
            assert rows == []  # no row: Grafana shows the panel's noValue, "No usage data"
    return check


def check_series(*fields: str):
    """Buckets of $__timeInterval at an hourly and a daily interval equal the hourly and daily series."""
    def check(store, sql, scope, scope_id, start, end):  # noqa: F811
        for interval_s, granularity in ((3600, "hour"), (86400, "day")):
            rows = run(store, expand(sql, start, end, interval_s, **variables(scope, scope_id)))
            series = store.queries.series(request(scope, scope_id, start, end, granularity))
            assert [(epoch(r[0]), *r[1:]) for r in rows] == [
                (epoch(b.start), *(getattr(b, f) for f in fields)) for b in series.buckets]
    return check


def check_requests_per_hour(store, sql, scope, scope_id, start, end):  # noqa: F811
    for interval_s in (3600, 86400):  # the panel is hourly whatever interval Grafana picks
        rows = run(store, expand(sql, start, end, interval_s, **variables(scope, scope_id)))
        series = store.queries.series(request(scope, scope_id, start, end, "hour"))
        assert [(epoch(t), n) for t, n in rows] == [(epoch(b.start), b.requests) for b in series.buckets]


def check_models(store, sql, scope, scope_id, start, end):  # noqa: F811
    rows = run(store, expand(sql, start, end, **variables(scope, scope_id)))
    breakdown = store.queries.models(request(scope, scope_id, start, end))  # ordered by cost, like the panel
    assert [r[:6] for r in rows] == [(m.model, m.provider, m.totals.input_tokens, m.totals.output_tokens,
                                      m.totals.total_cost, m.totals.requests) for m in breakdown.models]
    for row, model in zip(rows, breakdown.models):
        share = row[6]
        assert share == pytest.approx(model.totals.requests / breakdown.total_requests, rel=1e-12)
        assert abs(Decimal(share) - model.request_share) <= Decimal("0.0000005")  # the API's 6-place rounding


def check_counted_through(store, sql, scope, scope_id, start, end):  # noqa: F811
    rows = run(store, expand(sql, start, end, **variables(scope, scope_id)))
    counted_through = store.queries.freshness().counted_through
    assert rows == ([] if counted_through is None else [(counted_through.replace(tzinfo=None),)])


CHECKS = {
    "Counted through": check_counted_through,
    "Total tokens": check_stat("total_tokens"),
    "Input tokens": check_stat("input_tokens"),
    "Output tokens": check_stat("output_tokens"),
    "Total requests": check_stat("requests"),
    "Total cost": check_stat("total_cost"),
    "Total tokens over time": check_series("total_tokens"),
    "Input vs output tokens": check_series("input_tokens", "output_tokens"),
    "Requests per hour": check_requests_per_hour,
    "Usage by model": check_models,
}


def test_every_check_has_its_panel():
    assert {p["title"] for p in clickhouse_panels()} >= set(CHECKS)


@pytest.mark.parametrize("scope,scope_id,start,end", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("title", [p["title"] for p in clickhouse_panels()])
def test_panel_equals_the_query_module(store, title, scope, scope_id, start, end):  # noqa: F811
    assert title in CHECKS, f"panel {title!r} has no check: add one to CHECKS"
    CHECKS[title](store, panel_sql(title), scope, scope_id, start, end)


def test_the_no_usage_range_is_really_empty_and_its_series_is_all_zeros(store):  # noqa: F811
    key, start, end = RANGES[-1]
    assert store.queries.summary(request("key", key, start, end)).status.state == "no_requests_in_period"
    rows = run(store, expand(panel_sql("Total tokens over time"), start, end, 86400, **variables("key", key)))
    assert len(rows) == 7 and all(n == 0 for _, n in rows)


@pytest.mark.parametrize("key", ["key-a' OR api_key_id != '", "x\\' OR 1 = 1 OR '", "x\\", "ü'\"`;"])
def test_any_key_value_is_data_not_sql(store, key):  # noqa: F811
    """Quotes and backslashes (which ClickHouse reads as escapes) in a key id cannot end the literal."""
    for scope in ("key", "org", "project"):
        assert run(store, expand(panel_sql("Total requests"), *RANGES[0][1:], **variables(scope, key))) == []
    assert run(store, expand(variable_sql("key"), *RANGES[0][1:], org=key, project=ALL)) == []


def test_a_key_id_is_decoded_back_exactly(store):  # noqa: F811
    [(decoded,)] = run(store, expand("SELECT " + variable("key"), *RANGES[0][1:], key="a'b\\c ü%"))
    assert decoded == "a'b\\c ü%"


def test_time_filter_would_count_the_window_starting_at_to(store):  # noqa: F811
    """Why the panels write `window_start < $__toTime`: the plugin's $__timeFilter includes `to`."""
    key, start, end = "key-a", utc(2026, 10, 21), utc(2026, 10, 22)
    with_macro = panel_sql("Total requests").replace("window_start >= $__fromTime AND window_start < $__toTime",
                                                     "$__timeFilter(window_start)").replace(
        "hour < $__toTime", "hour <= $__toTime")
    next_hour = store.queries.summary(request("key", key, end, utc(2026, 10, 22, 0, 15))).totals.requests
    assert next_hour > 0
    [(inclusive,)] = run(store, expand(with_macro, start, end, **variables("key", key)))
    [(exact,)] = run(store, expand(panel_sql("Total requests"), start, end, **variables("key", key)))
    assert exact == store.queries.summary(request("key", key, start, end)).totals.requests
    assert inclusive == exact + next_hour


# --- template variables -------------------------------------------------------------------------------------

@pytest.mark.parametrize("org,project", [(ALL, ALL), ("org-1", ALL), ("org-1", "proj-y"), ("", "")])
def test_the_key_variable_lists_the_keys_of_the_chosen_org_and_project(store, org, project):  # noqa: F811
    start, end = utc(2026, 10, 1), utc(2026, 11, 10)
    rows = run(store, expand(variable_sql("key"), start, end, org=org, project=project))
    expected = sorted({p.event["api_key_id"] for p in store.ledger
                       if org in ("", ALL, p.event["org_id"]) and project in ("", ALL, p.event["project_id"])})
    assert [r[0] for r in rows] == expected and expected


def test_the_org_and_project_variables(store):  # noqa: F811
    start, end = utc(2026, 10, 1), utc(2026, 11, 10)
    orgs = [r[0] for r in run(store, expand(variable_sql("org"), start, end))]
    assert orgs == sorted({p.event["org_id"] for p in store.ledger})
    projects = [r[0] for r in run(store, expand(variable_sql("project"), start, end, org="org-2"))]
    assert projects == sorted({p.event["project_id"] for p in store.ledger if p.event["org_id"] == "org-2"})


def test_every_clickhouse_query_of_the_dashboard_is_covered_here():
    """A query added outside the panels checked above (say a new variable) must get a test too."""
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]
                 if v.get("datasource", {}).get("uid") == CLICKHOUSE_UID}
    assert variables == {"org", "project", "key"}
    assert all(len(p["targets"]) == 1 for p in clickhouse_panels())


def test_the_counted_through_panel_shows_the_query_modules_freshness(clickhouse):  # noqa: F811
    from pipeline.metering.failpoints import Failpoints
    from pipeline.metering.sink import RollupWriter
    from pipeline.usage.query import UsageQueries
    writer = RollupWriter(clickhouse, "usage", 7 * 86400, Failpoints())
    assert writer.record_freshness(0, -1, int(utc(2026, 11, 30, 12, 0, 1).timestamp() * 1000) + 250)
    assert writer.record_freshness(1, -1, int(utc(2026, 11, 30, 12, 5).timestamp() * 1000))
    rows = clickhouse.query(expand(panel_sql("Counted through"), utc(2026, 11, 1), utc(2026, 12, 1),
                                   **variables("key", "k"))).result_rows
    expected = UsageQueries(clickhouse).freshness().counted_through
    assert expected == datetime(2026, 11, 30, 12, 0, 1, 250000, tzinfo=UTC)  # the older partition
    assert rows == [(expected.replace(tzinfo=None),)]
