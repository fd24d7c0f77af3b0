"""meterline's Grafana dashboards, generated as JSON into ``deploy/grafana/dashboards/``.

    python -m pipeline.devtools.dashboards           write the JSON files
    python -m pipeline.devtools.dashboards --check   exit 1 if the committed files differ from this generator

Two dashboards:

* **API key usage** (``meterline-key-usage``): what a key owner sees, read from ClickHouse's ``usage_15m``
  through the ``grafana-clickhouse-datasource`` plugin, for one key, or with key "All" for the chosen org, project,
  or every key. Every number equals what ``pipeline.usage.query`` answers for that scope
  (tests/integration/test_grafana_panels.py runs each panel's SQL and compares). The same SQL serves every scope:
  ClickHouse reads a key from the table's rows and an org, a project or all keys from its projections
  (schemas/migrations/0008_*.sql).
* **Pipeline health** (``meterline-pipeline``): the workers' Prometheus metrics (``pipeline/metrics.py``).

Time ranges follow the query module: a stored hour counts when its *start* lies in [from, to). The plugin's
``$__timeFilter(hour)`` is ``hour >= toDateTime(from) AND hour <= toDateTime(to)`` (inclusive ``to``: an hour
starting exactly at ``to`` would be counted too), so the panels write ``hour >= $__fromTime AND hour < $__toTime``
instead. Template variables are written ``decodeURLComponent('${name:percentencode}')``: Grafana percent-encodes
the value (leaving only letters, digits and ``-_.~``) and ClickHouse decodes it, so no value, whatever quotes or
backslashes it holds, can end the string literal. (A bare ``$name`` is pasted raw by the plugin; Grafana's
``singlequote`` and ``sqlstring`` formats do not escape backslashes, which ClickHouse reads as escapes. Key ids
are free text, and a viewer can put any value in the URL's ``var-key``.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "meterline-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "meterline-prometheus"}
NO_USAGE = "No usage data"
SCHEMA_VERSION = 39

# --- API key usage (ClickHouse) -----------------------------------------------------------------------------

def variable(name: str) -> str:
    """A template variable as a ClickHouse string expression, safe for any value (see above)."""
    return f"decodeURLComponent('${{{name}:percentencode}}')"


# The scope the variables pick, as the query module reads it: a key (key chosen), else the chosen org and/or
# project (a project's org(s) from the key list, so the org-ordered projection prunes), else every key. "All" turns
# a condition into 1=1.
SCOPE = (f"$__conditionalAll(api_key_id = {variable('key')}, $key) "
         f"AND $__conditionalAll(org_id = {variable('org')}, $org) "
         f"AND $__conditionalAll(org_id IN (SELECT org_id FROM usage_keys WHERE project_id = {variable('project')}) "
         f"AND project_id = {variable('project')}, $project)")
# ... over the picked range (15-minute windows starting in [from, to)); the `hour` bounds let the sort orders prune.
KEY_IN_RANGE = (f"{SCOPE} AND hour >= toStartOfHour($__fromTime) AND hour < $__toTime "
                "AND window_start >= $__fromTime AND window_start < $__toTime")
# The first stored window the range counts: `from` rounded up to a quarter hour (as ranges.py's _ceil_window).
FIRST_WINDOW = "toDateTime(intDiv(toUInt32($__fromTime) + 899, 900) * 900, 'UTC')"
# Zero-filled buckets (like the query module's series) so bars and lines have no holes. Buckets of
# $__timeInterval are epoch-aligned: whole UTC hours and days (weeks, if Grafana picks 7d, start on Thursdays).
FILL_INTERVALS = (f"ORDER BY time WITH FILL FROM toStartOfInterval({FIRST_WINDOW}, INTERVAL $__interval_s second) "
                  "TO $__toTime STEP $__interval_s")
FILL_HOURS = f"ORDER BY time WITH FILL FROM toStartOfHour({FIRST_WINDOW}) TO $__toTime STEP 3600"
# Stats answer no row at all for a range without requests, so Grafana shows NO_USAGE instead of a 0.
HAS_USAGE = "HAVING sum(requests) > 0"


def _stat_sql(expression: str, name: str) -> str:
    return f'SELECT {expression} AS "{name}"\nFROM usage_15m\nWHERE {KEY_IN_RANGE}\n{HAS_USAGE}'


TOTAL_TOKENS_SQL = _stat_sql("sum(input_tokens) + sum(output_tokens)", "Total tokens")
INPUT_TOKENS_SQL = _stat_sql("sum(input_tokens)", "Input tokens")
OUTPUT_TOKENS_SQL = _stat_sql("sum(output_tokens)", "Output tokens")
REQUESTS_SQL = _stat_sql("sum(requests)", "Requests")
# The exact Decimal(38, 24) sum; the plugin hands Decimals to Grafana as float64, shown with 4 decimals.
COST_SQL = _stat_sql("sum(total_cost)", "Total cost (USD)")

TOKENS_OVER_TIME_SQL = f"""SELECT $__timeInterval(window_start) AS time,
       sum(input_tokens) + sum(output_tokens) AS "Total tokens"
FROM usage_15m
WHERE {KEY_IN_RANGE}
GROUP BY time
{FILL_INTERVALS}"""

INPUT_OUTPUT_SQL = f"""SELECT $__timeInterval(window_start) AS time,
       sum(input_tokens) AS "Input tokens", sum(output_tokens) AS "Output tokens"
FROM usage_15m
WHERE {KEY_IN_RANGE}
GROUP BY time
{FILL_INTERVALS}"""

REQUESTS_PER_HOUR_SQL = f"""SELECT hour AS time, sum(requests) AS "Requests"
FROM usage_15m
WHERE {KEY_IN_RANGE}
GROUP BY time
{FILL_HOURS}"""

# Ordered like the query module's default (cost, then requests, then model and provider). The share is
# requests / all requests of the range; the API rounds it half-even to 6 places, the table shows 2 (%).
# Like the query module's per-model totals (pipeline/usage/ranges.py decompose), whole UTC days are read at day grain
# (the daily projection, for all keys) and only the windows before the first and after the last whole day at 15
# minutes. Days are [first_day, end_day) when the range holds one, else empty (both at the range's end).
_FIRST_DAY = "toStartOfDay(toDateTime(intDiv(toUInt32($__fromTime) + 86399, 86400) * 86400, 'UTC'))"
_END_DAY = "toStartOfDay(toDateTime(intDiv(toUInt32($__toTime) + 899, 900) * 900, 'UTC'))"
_DAYS_FROM = f"if({_FIRST_DAY} < {_END_DAY}, {_FIRST_DAY}, $__toTime)"
_DAYS_TO = f"if({_FIRST_DAY} < {_END_DAY}, {_END_DAY}, $__toTime)"
_MODEL_SUMS = ("sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(total_cost) AS total_cost, "
               "sum(requests) AS requests")
MODELS_SQL = f"""SELECT model AS "Model", provider AS "Provider",
       sum(input_tokens) AS "Input tokens", sum(output_tokens) AS "Output tokens",
       sum(total_cost) AS "Cost (USD)", sum(requests) AS "Requests",
       sum(requests) / sum(sum(requests)) OVER () AS "Share of requests"
FROM
(
    SELECT model, provider, {_MODEL_SUMS}
    FROM usage_15m
    WHERE {SCOPE}
      AND ((hour >= toStartOfHour($__fromTime) AND hour < {_DAYS_FROM}
            AND window_start >= $__fromTime AND window_start < {_DAYS_FROM})
        OR (hour >= {_DAYS_TO} AND hour < $__toTime AND window_start >= {_DAYS_TO} AND window_start < $__toTime))
    GROUP BY model, provider
    UNION ALL
    SELECT model, provider, {_MODEL_SUMS}
    FROM rollups
    WHERE kind = 'usage' AND {SCOPE}
      AND toStartOfDay(hour) >= {_DAYS_FROM} AND toStartOfDay(hour) < {_DAYS_TO}
    GROUP BY model, provider
)
GROUP BY model, provider
ORDER BY "Cost (USD)" DESC, "Requests" DESC, "Model", "Provider"
SETTINGS optimize_time_filter_with_preimage = 0"""

# Freshness (pipeline/usage/query.py Freshness): every event that reached Kafka before this instant is counted.
COUNTED_THROUGH_SQL = """SELECT min(counted_through) AS "Counted through"
FROM ingest_progress
HAVING min(counted_through) > 0"""

# Template variables, from the key list (view usage_keys: a few rows per key): org and project (or All) narrow the
# keys; the panels read the chosen key, or with key "All" the chosen org and project, or every key.
ORG_VARIABLE_SQL = "SELECT org_id FROM usage_keys WHERE org_id != '' GROUP BY org_id ORDER BY org_id"
PROJECT_VARIABLE_SQL = f"""SELECT project_id FROM usage_keys
WHERE project_id != '' AND $__conditionalAll(org_id = {variable('org')}, $org)
GROUP BY project_id
ORDER BY project_id"""
KEY_VARIABLE_SQL = f"""SELECT api_key_id FROM usage_keys
WHERE api_key_id != ''
  AND $__conditionalAll(org_id = {variable('org')}, $org)
  AND $__conditionalAll(project_id = {variable('project')}, $project)
GROUP BY api_key_id
ORDER BY api_key_id"""


def _clickhouse_target(sql: str, time_series: bool = False) -> dict:
    # format 0 = time series, 1 = table (grafana/sqlds' FormatQueryOption); the plugin runs rawSql as written.
    return {"refId": "A", "datasource": CLICKHOUSE, "editorType": "sql", "rawSql": sql,
            "format": 0 if time_series else 1, "queryType": "timeseries" if time_series else "table"}


def _stat(title: str, sql: str, grid: dict, unit: str, decimals: int | None = None, description: str = "") -> dict:
    defaults = {"unit": unit, "noValue": NO_USAGE, "color": {"mode": "fixed", "fixedColor": "text"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat", "title": title, "description": description, "datasource": CLICKHOUSE,
        "gridPos": grid,
        "targets": [_clickhouse_target(sql)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "none", "graphMode": "none", "textMode": "value", "justifyMode": "center",
                    "orientation": "auto", "wideLayout": True, "showPercentChange": False},
    }


def _series_color(name: str, color: str) -> dict:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}


def _time_series(title: str, sql: str, grid: dict, colors: dict[str, str], bars: bool, unit: str = "short",
                 description: str = "", min_interval: str | None = "1h") -> dict:
    custom = {"drawStyle": "bars" if bars else "line", "fillOpacity": 80 if bars else 15, "lineWidth": 1 if bars else 2,
              "barAlignment": -1, "showPoints": "never", "spanNulls": False, "stacking": {"mode": "none"},
              "axisSoftMin": 0}
    panel = {
        "type": "timeseries", "title": title, "description": description, "datasource": CLICKHOUSE,
        "gridPos": grid, "targets": [_clickhouse_target(sql, time_series=True)],
        "fieldConfig": {"defaults": {"unit": unit, "noValue": NO_USAGE, "custom": custom},
                        "overrides": [_series_color(name, color) for name, color in colors.items()]},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
    }
    if min_interval:
        panel["interval"] = min_interval  # data is hourly: never ask for buckets shorter than an hour
    return panel


def _models_table() -> dict:
    def unit(name: str, value: str, decimals: int | None = None) -> dict:
        properties = [{"id": "unit", "value": value}]
        if decimals is not None:
            properties.append({"id": "decimals", "value": decimals})
        return {"matcher": {"id": "byName", "options": name}, "properties": properties}

    return {
        "type": "table", "title": "Usage by model",
        "description": "Per model x provider over the range, ordered by cost. Share of requests = the model's "
                       "requests / all requests of the key (or org, project, all keys) in the range.",
        "datasource": CLICKHOUSE, "gridPos": {"x": 0, "y": 20, "w": 24, "h": 9},
        "targets": [_clickhouse_target(MODELS_SQL)],
        "fieldConfig": {"defaults": {"noValue": NO_USAGE, "custom": {"align": "auto"}},
                        "overrides": [unit("Input tokens", "short"), unit("Output tokens", "short"),
                                      unit("Cost (USD)", "currencyUSD", 6), unit("Requests", "short"),
                                      unit("Share of requests", "percentunit", 2)]},
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    }


def _query_variable(name: str, label: str, sql: str, include_all: bool) -> dict:
    variable = {"type": "query", "name": name, "label": label, "datasource": CLICKHOUSE, "query": sql,
                "definition": sql, "refresh": 1, "sort": 0, "multi": False, "includeAll": include_all,
                "hide": 0, "regex": "", "options": []}
    if include_all:
        # "All" reaches $__conditionalAll as $__all, which turns the condition into 1=1.
        variable["current"] = {"selected": True, "text": "All", "value": "$__all"}
    return variable


def key_usage_dashboard() -> dict:
    tokens_note = "Input + output tokens of the 15-minute windows starting in the range."
    cost_note = "Exact sum of the priced cost in USD (the API and CSV give all 24 decimals); unpriced models count 0."
    stats = [  # title, SQL, unit, decimals shown, description
        ("Total tokens", TOTAL_TOKENS_SQL, "short", None, tokens_note),
        ("Input tokens", INPUT_TOKENS_SQL, "short", None, ""),
        ("Output tokens", OUTPUT_TOKENS_SQL, "short", None, ""),
        ("Total requests", REQUESTS_SQL, "short", None, "Requests counted, errors included."),
        ("Total cost", COST_SQL, "currencyUSD", 4, cost_note),
    ]
    # Four stats of width 5 and the cost (width 4) across the 24-column grid.
    panels = [_stat(title, sql, {"x": 5 * i, "y": 0, "w": 5 if i < 4 else 4, "h": 4}, unit, decimals, description)
              for i, (title, sql, unit, decimals, description) in enumerate(stats)]
    panels += [
        _time_series("Total tokens over time", TOKENS_OVER_TIME_SQL, {"x": 0, "y": 4, "w": 12, "h": 8},
                     {"Total tokens": "green"}, bars=True,
                     description="Input + output tokens per bucket (at least an hour; UTC-aligned)."),
        _time_series("Input vs output tokens", INPUT_OUTPUT_SQL, {"x": 12, "y": 4, "w": 12, "h": 8},
                     {"Input tokens": "blue", "Output tokens": "red"}, bars=False),
        _time_series("Requests per hour", REQUESTS_PER_HOUR_SQL, {"x": 0, "y": 12, "w": 24, "h": 8},
                     {"Requests": "purple"}, bars=True, description="Requests per UTC hour.", min_interval=None),
        _models_table(),
        _stat("Counted through", COUNTED_THROUGH_SQL, {"x": 0, "y": 29, "w": 8, "h": 3}, "dateTimeAsIso", None,
              "Every event that reached Kafka before this instant is counted. Events may still arrive late for "
              "any window within the lateness bound (METERLINE_MAX_LATENESS, 7 days by default)."),
    ]
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
    return _dashboard(
        uid="meterline-key-usage", title="meterline / API key usage", panels=panels,
        description="Usage of one API key (or, with key All, of the chosen org, project, or every key), exactly as "
                    "meterline's usage API reports it. 15-minute windows count when their start lies in the picked "
                    "range; times are UTC.",
        variables=[_query_variable("org", "Org", ORG_VARIABLE_SQL, include_all=True),
                   _query_variable("project", "Project", PROJECT_VARIABLE_SQL, include_all=True),
                   _query_variable("key", "API key", KEY_VARIABLE_SQL, include_all=True)],
        time_from="now-7d", refresh="5m")


# --- Pipeline health (Prometheus) ---------------------------------------------------------------------------

def _rate(metric: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping}(rate({metric}[$__rate_interval]))"


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[$__rate_interval])))"


def _prometheus_panel(title: str, targets: list[tuple[str, str]], grid: dict, unit: str = "short",
                      description: str = "", kind: str = "timeseries") -> dict:
    panel = {
        "type": kind, "title": title, "description": description, "datasource": PROMETHEUS, "gridPos": grid,
        "targets": [{"refId": chr(ord("A") + i), "datasource": PROMETHEUS, "expr": expr, "legendFormat": legend,
                     "range": True} for i, (expr, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
    }
    if kind == "stat":
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return panel


def _row(title: str, y: int) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": []}


def pipeline_dashboard() -> dict:
    lag = "max by (partition) (meterline_consumer_lag_messages)"
    panels = [
        _prometheus_panel("Workers up", [('sum(up{job="meterline-worker"})', "up")], {"x": 0, "y": 0, "w": 4, "h": 4},
                          kind="stat", description="Worker replicas Prometheus can scrape."),
        _prometheus_panel("Consumer lag (all partitions)", [(f"sum({lag})", "messages")],
                          {"x": 4, "y": 0, "w": 5, "h": 4}, kind="stat",
                          description="Messages in the usage topic not yet committed to ClickHouse."),
        _prometheus_panel("Events counted / s", [(_rate("meterline_events_counted_total"), "counted")],
                          {"x": 9, "y": 0, "w": 5, "h": 4}, unit="ops", kind="stat"),
        _prometheus_panel("Rejected / s", [(_rate("meterline_events_rejected_total"), "rejected")],
                          {"x": 14, "y": 0, "w": 5, "h": 4}, unit="ops", kind="stat"),
        _prometheus_panel("Alerts sent (range)", [("sum(increase(meterline_alerts_sent_total[$__range]))", "sent")],
                          {"x": 19, "y": 0, "w": 5, "h": 4}, kind="stat"),
        _row("Throughput", 4),
        _prometheus_panel("Events per second", [
            (_rate("meterline_events_consumed_total"), "consumed"),
            (_rate("meterline_events_counted_total"), "counted"),
            (_rate("meterline_events_duplicate_total"), "duplicate"), (_rate("meterline_events_late_total"), "late"),
            (_rate("meterline_events_unpriced_total"), "unpriced"),
            (_rate("meterline_messages_consumed_total"), "Kafka messages")],
            {"x": 0, "y": 5, "w": 12, "h": 8}, unit="ops",
            description="Every consumed event ends up counted, duplicate or rejected; late and unpriced are "
                        "counted events."),
        _prometheus_panel("Rejected events by reason", [
            (_rate("meterline_events_rejected_total", "reason"), "{{reason}}")], {"x": 12, "y": 5, "w": 12, "h": 8},
            unit="ops", description="Dead-lettered to the DLQ topic, by reason."),
        _row("Lag and latency", 13),
        _prometheus_panel("Consumer lag by partition", [(lag, "partition {{partition}}")],
                          {"x": 0, "y": 14, "w": 8, "h": 8}),
        _prometheus_panel("ClickHouse write latency", [
            (_quantile(q, "meterline_clickhouse_write_duration_seconds"), f"p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)], {"x": 8, "y": 14, "w": 8, "h": 8}, unit="s",
            description="Time to write one flush (usage, outcomes and progress in one insert)."),
        _prometheus_panel("Flush duration", [
            (_quantile(q, "meterline_flush_duration_seconds"), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
            {"x": 16, "y": 14, "w": 8, "h": 8}, unit="s", description="From the start of a flush to its commit."),
        _row("Flushes and errors", 22),
        _prometheus_panel("Flushes", [(_rate("meterline_flushes_total"), "committed"),
                                      (_rate("meterline_flushes_fenced_total"), "fenced")],
                          {"x": 0, "y": 23, "w": 8, "h": 8}, unit="ops",
                          description="Fenced: refused because another worker advanced the partition (rebalances)."),
        _prometheus_panel("Errors", [(_rate("meterline_clickhouse_errors_total"), "ClickHouse errors (retried)"),
                                     (_rate("meterline_dead_letter_errors_total"), "dead-letter send errors"),
                                     ("sum(increase(meterline_offset_gaps_total[$__rate_interval]))",
                                      "offset gaps (data lost to retention)")],
                          {"x": 8, "y": 23, "w": 8, "h": 8}, unit="ops"),
        _prometheus_panel("Usage rows written", [(_rate("meterline_rollup_rows_written_total"), "rows")],
                          {"x": 16, "y": 23, "w": 8, "h": 8}, unit="ops"),
        _row("Usage alerts", 31),
        _prometheus_panel("Alert deliveries", [
            (_rate("meterline_alerts_sent_total", "channel, status"), "{{channel}} {{status}}"),
            (_rate("meterline_alert_delivery_failures_total", "channel"), "{{channel}} failed"),
            (_rate("meterline_alert_run_failures_total"), "failed runs")],
            {"x": 0, "y": 32, "w": 12, "h": 8}, unit="ops",
            description="Notifications of `meterline alerts run` accepted by each channel, refused deliveries "
                        "(retried next run) and runs that failed before delivery."),
        _prometheus_panel("Open usage alerts", [("sum by (metric) (meterline_alerts_open)", "{{metric}}")],
                          {"x": 12, "y": 32, "w": 12, "h": 8},
                          description="Usage-spike alerts open after the last run, by metric."),
        _row("Collector and memory", 40),
        _prometheus_panel("HTTP collector", [
            (_rate("meterline_ingest_events_accepted_total"), "accepted"),
            (_rate("meterline_ingest_events_rejected_total", "reason"), "rejected: {{reason}}"),
            (_rate("meterline_ingest_produce_errors_total"), "503: Kafka failed")],
            {"x": 0, "y": 41, "w": 8, "h": 8}, unit="ops",
            description="Events gateways POSTed to `meterline collect`: acknowledged by Kafka, refused as invalid, "
                        "and requests answered 503."),
        _prometheus_panel("Collector produce latency", [
            (_quantile(q, "meterline_ingest_produce_duration_seconds"), f"p{round(q * 100)}") for q in (0.5, 0.99)],
            {"x": 8, "y": 41, "w": 8, "h": 8}, unit="s",
            description="From queueing a request's events to Kafka's acknowledgement."),
        _prometheus_panel("Dedup filter", [("sum(meterline_dedup_filter_entries)", "request ids"),
                                           ("sum(meterline_dedup_filter_bytes)", "bytes")],
                          {"x": 16, "y": 41, "w": 8, "h": 8},
                          description="Request ids held in memory by the workers' dedup filters."),
    ]
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
    return _dashboard(uid="meterline-pipeline", title="meterline / Pipeline health", panels=panels,
                      description="meterline workers: throughput, outcomes, lag, ClickHouse writes, errors.",
                      variables=[], time_from="now-6h", refresh="30s")


def _dashboard(uid: str, title: str, panels: list[dict], description: str, variables: list[dict], time_from: str,
               refresh: str) -> dict:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["meterline"], "timezone": "utc",
        "editable": True, "graphTooltip": 1, "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": time_from, "to": "now"}, "refresh": refresh, "fiscalYearStartMonth": 0,
        "templating": {"list": variables}, "annotations": {"list": []}, "links": [], "panels": panels,
    }


DASHBOARDS = {"key-usage.json": key_usage_dashboard, "pipeline-health.json": pipeline_dashboard}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = DASHBOARD_DIR / name, render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale dashboards: {', '.join(stale)}; run python -m pipeline.devtools.dashboards", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
