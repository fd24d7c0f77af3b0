"""The API-key usage view: summary, per-model breakdown, time series and peak hours, read from ``usage_15m``.

Every number is summed by ClickHouse (rows are deltas: always ``sum() ... GROUP BY``); Python only derives
ratios from those sums and formats. All SQL lives in this module; user input reaches it only as bound
parameters (``{name:Type}``), and the few fragments spliced in (scope column, bucket expression) come from
fixed tables below.

Storage is per 15-minute window of UTC (schemas/migrations/0005_*.sql). A window counts in a range when its
start lies in [from, to), and in the local quarter hour, hour, day, week or month its start falls in: exact in
every zone, because every UTC offset in use since 1972 is a whole number of quarter hours (Asia/Kolkata +05:30,
Asia/Kathmandu +05:45, Australia/Lord_Howe's 30-minute DST shift). Usage stored before that migration sits in
the first quarter of its hour.

Every answer says how fresh it is (:class:`Freshness`): the instant up to which every event already in Kafka
has been counted, read from the partitions' committed progress in one small query.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from string import Template

from clickhouse_connect.driver.client import Client

from pipeline.alerts.state import AlertRecord, read_key_alerts
from pipeline.clock import HOUR_S
from pipeline.measures import CACHE_READ_TOKENS, CACHE_WRITE_TOKENS, ERROR_REQUESTS, INPUT_COST, INPUT_TOKENS, \
    OUTPUT_COST, OUTPUT_TOKENS, REASONING_TOKENS, REQUESTS, TOTAL_COST, UNIT_COSTS, UNITS, UNPRICED_REQUESTS, Measure, \
    costs_by_unit
from pipeline.usage.ranges import ALL, QueryError, UsageRequest, previous_period

# Money sums keep all 24 decimals; derived ratios are rounded half-even to these places.
AVERAGE_PLACES = Decimal("0.01")
RATIO_PLACES = Decimal("0.0001")
SHARE_PLACES = Decimal("0.000001")
ORDERS = {"cost": "total_cost DESC, requests DESC", "requests": "requests DESC, total_cost DESC"}

# The bucket of a stored 15-minute window, per granularity, as pipeline/usage/ranges.py bucket_key computes it:
# the window, its local hour's start (epoch seconds: 30 or 45 minutes past a UTC hour in some zones), or a local
# calendar date, so DST days (23 or 25 hours) fall out of ClickHouse's tz functions. Buckets without usage are
# filled in Python from UsageRequest.bucket_keys (local hours are not evenly spaced across a 30-minute DST shift).
BUCKETS = {
    "quarter_hour": "toUnixTimestamp(window_start)",
    "hour": "toUnixTimestamp(window_start) - toMinute(window_start, {tz:String}) * 60",
    "day": "toDate(window_start, {tz:String})",
    "week": "toMonday(window_start, {tz:String})",
    "month": "toStartOfMonth(window_start, {tz:String})",
}

# Where each scope's rows are read from (schemas/migrations/0008_*.sql, docs/usage-queries.md "Where each answer is
# read from"). Every query reads `usage_15m` (or its table, `rollups`) with sum() ... GROUP BY; ClickHouse answers it
# from the smallest of `rollups`' projections that holds what the query asks, part by part, and from the part's own
# rows where a part has no projection yet, so every source gives the same sums:
# - a key: the table's own rows (sorted by kind, api_key_id, hour);
# - an org or a project: projection usage_org_15m (sorted by org, project, hour); a project's org(s) come from the
#   key list (projection usage_keys), so the sort order is used for projects too;
# - all keys: usage_all_15m (per window, no key, no model), and for per-model totals usage_all_models_day for whole
#   UTC days plus usage_all_models_15m for the range's edges (UsageRequest.decomposition).
SCOPE_FILTERS = {
    "key": "api_key_id = {scope_id:String}",
    "org": "org_id = {scope_id:String}",
    "project": "org_id IN (SELECT org_id FROM usage_keys WHERE project_id = {scope_id:String}) "
               "AND project_id = {scope_id:String}",
    ALL: "true",
}
# The CSV has a row per key, which only the table's own rows hold: an org or project reads the rows of its keys.
EXPORT_SCOPE_FILTERS = {
    **SCOPE_FILTERS,
    "org": "api_key_id IN (SELECT api_key_id FROM usage_keys WHERE org_id = {scope_id:String}) "
           "AND org_id = {scope_id:String}",
    "project": "api_key_id IN (SELECT api_key_id FROM usage_keys WHERE project_id = {scope_id:String}) "
               "AND project_id = {scope_id:String}",
}
KEY_LIST_FILTERS = {**SCOPE_FILTERS, "project": "project_id = {scope_id:String}"}
# A key's rows are found through the table's sort order alone; skipping the projection analysis saves its cost.
# The other scopes name their projection, so the source does not depend on the planner's estimates (which tie on a
# small table); a part without it is still read from its own rows.
_KEY_ROWS = {"optimize_use_projections": 0}
SCOPE_SETTINGS = {"key": _KEY_ROWS,
                  "org": {"preferred_optimize_projection_name": "usage_org_15m"},
                  "project": {"preferred_optimize_projection_name": "usage_org_15m"},
                  ALL: {"preferred_optimize_projection_name": "usage_all_15m"}}
# The hour bounds let the sort orders (hour after the scope's columns) prune; the window bounds are the range.
_IN_RANGE = ("$scope AND hour >= toDateTime({first_hour:UInt32}, 'UTC') "
             "AND hour < toDateTime({end_hour:UInt32}, 'UTC') "
             "AND window_start >= toDateTime({first_window:UInt32}, 'UTC') "
             "AND window_start < toDateTime({end_window:UInt32}, 'UTC')")
# The sums behind Totals, by name (pipeline/measures.py); total_tokens and the ratios are derived in Python.
TOTALS_MEASURES = (REQUESTS, ERROR_REQUESTS, UNPRICED_REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ_TOKENS,
                   CACHE_WRITE_TOKENS, REASONING_TOKENS, INPUT_COST, OUTPUT_COST, TOTAL_COST, UNITS, UNIT_COSTS)
SERIES_MEASURES = (REQUESTS, ERROR_REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, TOTAL_COST)
# Per bucket x key x model x provider in the CSV (pipeline/usage/export.py names the other columns).
EXPORT_MEASURES = (REQUESTS, ERROR_REQUESTS, UNPRICED_REQUESTS, INPUT_TOKENS, OUTPUT_TOKENS, CACHE_READ_TOKENS,
                   CACHE_WRITE_TOKENS, REASONING_TOKENS, INPUT_COST, OUTPUT_COST, TOTAL_COST, UNITS, UNIT_COSTS)


def sums(measures: tuple[Measure, ...]) -> str:
    """``sum(name) AS name, ...`` for the measures (``sumMap`` for a per-unit Map): every answer reads its
    columns by name."""
    return ", ".join(f"{'sumMap' if measure.per_unit else 'sum'}({measure.name}) AS {measure.name}"
                     for measure in measures)


_SUMS = sums(TOTALS_MEASURES)

SUMMARY_SQL = f"SELECT {_SUMS} FROM usage_15m WHERE {_IN_RANGE}"
MODELS_SQL = f"""
SELECT model, provider, {_SUMS}
FROM usage_15m WHERE {_IN_RANGE}
GROUP BY model, provider
ORDER BY $order, model, provider"""
# Per-model totals of all keys: whole UTC days from the daily projection (its day is toStartOfDay(hour); the
# query keeps that form, hence optimize_time_filter_with_preimage = 0 in ALL_MODELS_SETTINGS: rewritten to bounds on
# `hour`, the filter would no longer match the projection), the rest of the range from the 15-minute one.
ALL_MODELS_SQL = f"""
SELECT model, provider, {_SUMS}
FROM
(
    $parts
)
GROUP BY model, provider
ORDER BY $order, model, provider"""
# Each branch names its projection (a subquery's SETTINGS apply to it alone).
ALL_MODELS_WINDOWS = (f"SELECT model, provider, {_SUMS} FROM usage_15m WHERE $runs GROUP BY model, provider "
                      "SETTINGS preferred_optimize_projection_name = 'usage_all_models_15m'")
ALL_MODELS_DAYS = (f"SELECT model, provider, {_SUMS} FROM rollups WHERE kind = 'usage' AND ($runs) "
                   "GROUP BY model, provider SETTINGS preferred_optimize_projection_name = 'usage_all_models_day'")
WINDOW_RUN = ("(hour >= toDateTime({$a_hour:UInt32}, 'UTC') AND hour < toDateTime({$b_hour:UInt32}, 'UTC') "
              "AND window_start >= toDateTime({$a:UInt32}, 'UTC') AND window_start < toDateTime({$b:UInt32}, 'UTC'))")
DAY_RUN = ("(toStartOfDay(hour) >= toDateTime({$a:UInt32}, 'UTC') "
           "AND toStartOfDay(hour) < toDateTime({$b:UInt32}, 'UTC'))")
ALL_MODELS_SETTINGS = {"optimize_time_filter_with_preimage": 0}
SERIES_SQL = f"""
SELECT $bucket AS bucket, {sums(SERIES_MEASURES)}
FROM usage_15m WHERE {_IN_RANGE}
GROUP BY bucket"""
PEAK_HOURS_SQL = f"""
SELECT toHour(window_start, {{tz:String}}) AS hour_of_day, sum(requests) AS requests,
       sum(input_tokens) + sum(output_tokens) AS total_tokens
FROM usage_15m WHERE {_IN_RANGE}
GROUP BY hour_of_day"""
EXPORT_SQL = f"""
SELECT $bucket AS bucket, api_key_id, model, provider, {sums(EXPORT_MEASURES)},
       arrayStringConcat(arraySort(arrayFilter(v -> v != '', groupUniqArray(price_version))), ';') AS price_version
FROM usage_15m WHERE {_IN_RANGE}
GROUP BY bucket, api_key_id, model, provider
ORDER BY bucket, api_key_id, model, provider"""
EVER_USED_SQL = "SELECT count() FROM (SELECT 1 FROM usage_keys WHERE $scope LIMIT 1)"


@dataclass(frozen=True)
class Totals:
    """Sums over a range. ``total_tokens`` = input + output. Derived ratios are None when their denominator
    is zero: ``avg_tokens_per_request`` (total / requests, 2 places) and ``output_input_ratio`` (output /
    input, 4 places), both rounded half-even.

    ``units``: every non-zero unit events reported beyond the token columns (genai-prices unit name -> count:
    ``input_audio_tokens``, ``cache_write_1h_tokens``, ``web_searches``, ...; they are parts of the token
    columns, see pipeline/units.py). ``unit_costs``: USD by priced unit, non-zero only; they sum to
    ``total_cost`` exactly (the stored map plus the two derived remainders, pipeline/measures.py
    ``costs_by_unit``)."""

    requests: int
    error_requests: int
    unpriced_requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_cost: Decimal
    output_cost: Decimal
    total_cost: Decimal
    avg_tokens_per_request: Decimal | None
    output_input_ratio: Decimal | None
    units: dict[str, int]
    unit_costs: dict[str, Decimal]

    @classmethod
    def from_sums(cls, sums: dict) -> "Totals":
        """From a row of :data:`TOTALS_MEASURES` sums, by name (other keys are ignored)."""
        values = {measure.name: non_zero(sums[measure.name]) if measure.per_unit else sums[measure.name]
                  for measure in TOTALS_MEASURES}
        values[UNIT_COSTS.name] = costs_by_unit(sums[UNIT_COSTS.name], sums[INPUT_COST.name], sums[OUTPUT_COST.name])
        total = values["input_tokens"] + values["output_tokens"]
        return cls(**values, total_tokens=total,
                   avg_tokens_per_request=_ratio(total, values["requests"], AVERAGE_PLACES),
                   output_input_ratio=_ratio(values["output_tokens"], values["input_tokens"], RATIO_PLACES))


@dataclass(frozen=True)
class Status:
    """Whether the range has usage, and if not, whether the id was ever seen at all."""

    has_usage: bool
    state: str  # "usage" | "no_requests_in_period" | "unknown"
    message: str


@dataclass(frozen=True)
class Freshness:
    """How final the numbers are. ``counted_through`` (UTC): every event that reached Kafka before this instant
    is counted; None when nothing has been counted yet. Later events can still arrive for any window up to
    ``lateness_bound_s`` seconds old (METERLINE_MAX_LATENESS): past windows are final only beyond that."""

    counted_through: datetime | None
    lateness_bound_s: int


@dataclass(frozen=True)
class Summary:
    request: UsageRequest
    status: Status
    totals: Totals
    freshness: Freshness


@dataclass(frozen=True)
class ModelUsage:
    """One model x provider. ``request_share`` = requests / all requests of the range, rounded half-even to
    6 places (so shares may sum to 1 +- a few millionths); the exact fraction is requests / total_requests."""

    model: str
    provider: str
    request_share: Decimal
    totals: Totals


@dataclass(frozen=True)
class ModelBreakdown:
    request: UsageRequest
    status: Status
    order: str
    total_requests: int
    models: tuple[ModelUsage, ...]
    freshness: Freshness


@dataclass(frozen=True)
class SeriesBucket:
    start: datetime  # local start of the bucket, with its UTC offset
    requests: int
    error_requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    total_cost: Decimal


@dataclass(frozen=True)
class Series:
    request: UsageRequest
    status: Status
    buckets: tuple[SeriesBucket, ...]
    freshness: Freshness


@dataclass(frozen=True)
class HourOfDay:
    hour: int  # 0..23, the local hour in the requested zone
    requests: int
    total_tokens: int


@dataclass(frozen=True)
class PeakHours:
    request: UsageRequest
    status: Status
    hours: tuple[HourOfDay, ...]
    freshness: Freshness


@dataclass(frozen=True)
class KeyList:
    """The api_key_ids with recorded usage that start with ``prefix``, sorted; ``truncated`` when more than
    ``limit`` match (narrow the prefix)."""

    prefix: str
    limit: int
    truncated: bool
    keys: tuple[str, ...]


# Any usage row makes a key known (the same test as the "unknown" state): view usage_keys, answered from projection
# usage_keys (a few rows per key), sorted by key, so a prefix reads only the matching part of its index.
KEYS_SQL = ("SELECT api_key_id FROM usage_keys WHERE startsWith(api_key_id, {prefix:String}) "
            "GROUP BY api_key_id ORDER BY api_key_id LIMIT {limit:UInt32}")


# Models that were counted without a price, over every key: what an operator should alias or price
# (docs/pricing.md). A stored 15-minute window counts when its start lies in [from, to), as for every answer.
UNPRICED_SQL = """
SELECT model, provider, sum(unpriced_requests) AS requests, uniqExact(api_key_id) AS keys,
       min(window_start) AS first_window, max(window_start) AS last_window
FROM usage_15m
WHERE unpriced_requests > 0
  AND hour >= toDateTime({first_hour:UInt32}, 'UTC') AND hour < toDateTime({end_hour:UInt32}, 'UTC')
  AND window_start >= toDateTime({first_window:UInt32}, 'UTC') AND window_start < toDateTime({end_window:UInt32}, 'UTC')
GROUP BY model, provider
ORDER BY requests DESC, model, provider
LIMIT {limit:UInt32}"""


@dataclass(frozen=True)
class UnpricedModel:
    """A model x provider counted without a price: its unpriced requests, how many keys sent them, and the
    starts of the first and last stored 15-minute windows (UTC) that held one."""

    model: str
    provider: str
    requests: int
    keys: int
    first_window: datetime
    last_window: datetime


@dataclass(frozen=True)
class UnpricedModels:
    """Every model counted without a price in [start, end), most requests first (``truncated``: more than
    ``limit`` models)."""

    start: datetime
    end: datetime
    tz: str
    limit: int
    truncated: bool
    models: tuple[UnpricedModel, ...]


# The least freshness over the topic's partitions; ignores rows that claim none (counted_through 0).
FRESHNESS_SQL = ("SELECT min(counted_through), count() FROM ingest_progress "
                 "WHERE (kafka_topic = {topic:String} OR {topic:String} = '')")


class UsageQueries:
    """Answers for one key, org or project over a range. Synchronous: give it its own thread.

    ``usage_topic``: the topic whose progress says how fresh the answers are ("" for every topic the store
    knows); ``lateness_bound_s``: METERLINE_MAX_LATENESS, reported with it."""

    def __init__(self, client: Client, usage_topic: str = "", lateness_bound_s: int = 7 * 86400) -> None:
        self._client = client
        self._usage_topic = usage_topic
        self._lateness_bound_s = lateness_bound_s

    def freshness(self) -> Freshness:
        """The instant up to which every event already in Kafka is counted (one small query)."""
        [(counted_through, partitions)] = self._client.query(
            FRESHNESS_SQL, parameters={"topic": self._usage_topic}).result_rows
        if counted_through is not None and counted_through.tzinfo is None:
            counted_through = counted_through.replace(tzinfo=UTC)
        if not partitions or counted_through is None or counted_through.timestamp() <= 0:
            return Freshness(None, self._lateness_bound_s)
        return Freshness(counted_through, self._lateness_bound_s)

    def keys(self, prefix: str, limit: int) -> KeyList:
        # One row more than asked tells whether the list was cut.
        rows = self._client.query(KEYS_SQL, parameters={"prefix": prefix, "limit": limit + 1}).result_rows
        return KeyList(prefix, limit, len(rows) > limit, tuple(row[0] for row in rows[:limit]))

    def unpriced(self, request: UsageRequest, limit: int = 1000) -> UnpricedModels:
        """Models counted without a price in ``request``'s range, over every key (``request``'s scope and id are
        not used; admin only in the API), most unpriced requests first."""
        sql, parameters = self._bind(UNPRICED_SQL, request, limit=limit + 1)  # one more tells whether it was cut
        rows = list(self._client.query(sql, parameters=parameters).named_results())
        models = tuple(UnpricedModel(row["model"], row["provider"], row["requests"], row["keys"],
                                     _utc(row["first_window"]), _utc(row["last_window"])) for row in rows[:limit])
        return UnpricedModels(request.start, request.end, request.tz, limit, len(rows) > limit, models)

    def summary(self, request: UsageRequest) -> Summary:
        totals = Totals.from_sums(self._named(SUMMARY_SQL, request)[0])
        return Summary(request, self._status(request, totals.requests > 0), totals, self.freshness())

    def models(self, request: UsageRequest, order: str = "cost") -> ModelBreakdown:
        if order not in ORDERS:
            raise QueryError("unknown order", f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        if request.scope == ALL:
            sql, parameters = self._all_models(request, ORDERS[order])
            rows = list(self._client.query(sql, parameters=parameters, settings=ALL_MODELS_SETTINGS).named_results())
        else:
            rows = self._named(MODELS_SQL, request, order=ORDERS[order])
        all_requests = sum(row["requests"] for row in rows)  # a handful of per-model sums, not raw rows
        models = tuple(ModelUsage(row["model"], row["provider"],
                                  _ratio(row["requests"], all_requests, SHARE_PLACES) or Decimal(0),
                                  Totals.from_sums(row)) for row in rows)
        return ModelBreakdown(request, self._status(request, bool(rows)), order, all_requests, models,
                              self.freshness())

    def series(self, request: UsageRequest) -> Series:
        """Every bucket of the range in order, zero where there was no usage."""
        found = {row.pop("bucket"): row for row in self._named(SERIES_SQL, request)}
        # money is a Decimal like every other amount (the JSON says "0", a decimal string, not the number 0)
        empty = {measure.name: Decimal(0) if measure.unit == "USD" else 0 for measure in SERIES_MEASURES}
        buckets = []
        for key, start in request.bucket_starts().items():
            row = found.get(key, empty)
            buckets.append(SeriesBucket(start=start, total_tokens=row["input_tokens"] + row["output_tokens"], **row))
        return Series(request, self._status(request, any(b.requests for b in buckets)), tuple(buckets),
                      self.freshness())

    def peak_hours(self, request: UsageRequest) -> PeakHours:
        found = {row["hour_of_day"]: row for row in self._named(PEAK_HOURS_SQL, request)}
        hours = tuple(HourOfDay(hour, found[hour]["requests"], found[hour]["total_tokens"]) if hour in found
                      else HourOfDay(hour, 0, 0) for hour in range(24))
        return PeakHours(request, self._status(request, any(h.requests for h in hours)), hours, self.freshness())

    def export_blocks(self, request: UsageRequest, block_rows: int = 2048) -> AbstractContextManager:
        """A clickhouse-connect row-block stream of bucket x key x model x provider rows (see EXPORT_SQL),
        ``block_rows`` rows at most per block, so a caller holds one block in memory at a time."""
        sql, parameters = self._bind(EXPORT_SQL, request, scopes=EXPORT_SCOPE_FILTERS)
        return self._client.query_row_block_stream(
            sql, parameters=parameters, settings={**(_KEY_ROWS if request.scope == "key" else {}), "max_block_size": block_rows})

    def compare(self, request: UsageRequest) -> Comparison:
        """The range's totals next to those of its previous period (:func:`~pipeline.usage.ranges.previous_period`:
        the same local length just before ``from``), and the change of each compared measure."""
        current = self.summary(request)
        before = previous_period(request)
        previous = self.summary(before) if before is not None else None
        return Comparison(request, current.status, current.totals, before,
                          previous.status if previous else None, previous.totals if previous else None,
                          Changes.between(current.totals, previous.totals if previous else None),
                          current.freshness)

    def busiest_keys(self, request: UsageRequest, limit: int) -> BusiestKeys:
        """The api_key_ids with the most requests in ``request``'s range, over every key (``request``'s scope
        and id are not used): ties by total tokens, then cost, then id. Keys without requests are left out."""
        sql, parameters = self._bind(BUSIEST_KEYS_SQL, request, limit=limit)
        rows = self._client.query(sql, parameters=parameters).named_results()
        return BusiestKeys(request.start, request.end, request.tz, limit, tuple(
            KeyActivity(row["api_key_id"], row["requests"], row["total_tokens"], row["total_cost"]) for row in rows),
            self.freshness())

    def alerts(self, request: UsageRequest) -> KeyAlerts:
        """The spike alerts (pipeline/alerts, ``alert_state``) of the key ``request`` names that were open at some
        instant of its range, open or resolved, oldest first. Only keys have alerts: another scope has none."""
        if request.scope != "key":
            return KeyAlerts(request, ())
        records = read_key_alerts(self._client, request.scope_id, request.start, request.end)
        return KeyAlerts(request, tuple(SpikeAlert.of(record) for record in records))

    def _status(self, request: UsageRequest, has_usage: bool) -> Status:
        if has_usage:
            return Status(True, "usage", "")
        what = "all keys" if request.scope == ALL else f"{request.scope} {request.scope_id!r}"
        if self._rows(EVER_USED_SQL, request, scopes=KEY_LIST_FILTERS)[0][0]:
            return Status(False, "no_requests_in_period",
                          f"no requests in this period: {what} has no usage from {request.start.isoformat()} "
                          f"to {request.end.isoformat()} ({request.tz})")
        return Status(False, "unknown",
                      f"unknown {request.scope}: {what} has no recorded usage at all (never used, or not an id "
                      "meterline has seen)")

    def _rows(self, template: str, request: UsageRequest, scopes: dict = SCOPE_FILTERS, **extra) -> list[tuple]:
        sql, parameters = self._bind(template, request, scopes=scopes, **extra)
        return self._client.query(sql, parameters=parameters,
                                  settings=SCOPE_SETTINGS.get(request.scope) if scopes is SCOPE_FILTERS else None
                                  ).result_rows

    def _named(self, template: str, request: UsageRequest, **extra) -> list[dict]:
        """Rows as dicts keyed by the SELECT's column names."""
        sql, parameters = self._bind(template, request, **extra)
        return list(self._client.query(sql, parameters=parameters,
                                       settings=SCOPE_SETTINGS.get(request.scope)).named_results())

    @staticmethod
    def _bind(template: str, request: UsageRequest, order: str = "", scopes: dict = SCOPE_FILTERS,
              **extra) -> tuple[str, dict]:
        sql = Template(template).substitute(scope=scopes[request.scope], bucket=BUCKETS[request.granularity],
                                            order=order)
        parameters = {"scope_id": request.scope_id, "tz": request.tz, "first_hour": request.first_hour_epoch,
                      "end_hour": request.end_hour_epoch, "first_window": request.first_window_epoch,
                      "end_window": request.end_window_epoch, **extra}
        return sql, parameters

    @staticmethod
    def _all_models(request: UsageRequest, order: str) -> tuple[str, dict]:
        """ALL_MODELS_SQL for the request's decomposition: one branch per grain that has runs."""
        parts, parameters = request.decomposition(), {}

        def runs(template: str, grain: str, spans) -> str:
            terms = []
            for i, (start, stop) in enumerate(spans):
                a, b = f"{grain}{i}_a", f"{grain}{i}_b"
                parameters.update({a: start, b: stop, f"{a}_hour": start // HOUR_S * HOUR_S,
                                   f"{b}_hour": -(-stop // HOUR_S) * HOUR_S})
                terms.append(Template(template).substitute(a=a, b=b, a_hour=f"{a}_hour", b_hour=f"{b}_hour"))
            return " OR ".join(terms)

        branches = []
        if windows := joined(parts.windows + parts.hours):
            branches.append(Template(ALL_MODELS_WINDOWS).substitute(runs=runs(WINDOW_RUN, "w", windows)))
        if parts.days:
            branches.append(Template(ALL_MODELS_DAYS).substitute(runs=runs(DAY_RUN, "d", parts.days)))
        sql = Template(ALL_MODELS_SQL).substitute(parts="\n    UNION ALL\n    ".join(branches), order=order)
        return sql, parameters


def joined(runs) -> list[tuple[int, int]]:
    """Runs sorted, touching ones made one: (a, b), (b, c) -> (a, c)."""
    out: list[tuple[int, int]] = []
    for start, stop in sorted(runs):
        if out and out[-1][1] == start:
            out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def non_zero(summed: dict) -> dict:
    """A summed Map without its zero entries, keys sorted (sumMap keeps keys whose sum is 0)."""
    return {key: summed[key] for key in sorted(summed) if summed[key]}


def _ratio(numerator: int, denominator: int, places: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(places, rounding=ROUND_HALF_EVEN)


# ---- the previous period, the busiest keys and a key's spike alerts -------------------------------------

RELATIVE_PLACES = Decimal("0.0001")
# What Comparison compares: every Totals measure a card shows.
COMPARED = ("total_tokens", "input_tokens", "output_tokens", "requests", "error_requests", "cache_read_tokens",
            "cache_write_tokens", "reasoning_tokens", "total_cost", "avg_tokens_per_request", "output_input_ratio")


@dataclass(frozen=True)
class Change:
    """current - previous of one measure. ``difference``: exact (an integer for counts, a decimal for money and
    ratios); None when either side is None (a ratio without a denominator). ``relative`` = difference /
    previous, rounded half-even to 4 places (0.25 = +25%); None when the previous value is 0 or None."""

    difference: int | Decimal | None
    relative: Decimal | None

    @classmethod
    def of(cls, current: int | Decimal | None, previous: int | Decimal | None) -> "Change":
        if current is None or previous is None:
            return cls(None, None)
        difference = current - previous
        relative = None
        if previous:
            with localcontext() as context:  # exact enough for Decimal(38, 24) sums: one rounding, at the end
                context.prec = 100
                relative = (Decimal(difference) / Decimal(previous)).quantize(RELATIVE_PLACES,
                                                                              rounding=ROUND_HALF_EVEN)
        return cls(difference, relative)


@dataclass(frozen=True)
class Changes:
    """The change of each measure the range and its previous period are compared on, by name."""

    total_tokens: Change
    input_tokens: Change
    output_tokens: Change
    requests: Change
    error_requests: Change
    cache_read_tokens: Change
    cache_write_tokens: Change
    reasoning_tokens: Change
    total_cost: Change
    avg_tokens_per_request: Change
    output_input_ratio: Change

    @classmethod
    def between(cls, current: Totals, previous: Totals | None) -> "Changes":
        """All None without a previous period."""
        return cls(**{name: Change.of(getattr(current, name), getattr(previous, name) if previous else None)
                      for name in COMPARED})


@dataclass(frozen=True)
class Comparison:
    """A range and its previous period side by side. ``previous_request`` is None (and so are
    ``previous_status`` and ``previous_totals``) when that period would start before 1970-01-01 UTC."""

    request: UsageRequest
    status: Status
    totals: Totals
    previous_request: UsageRequest | None
    previous_status: Status | None
    previous_totals: Totals | None
    changes: Changes
    freshness: Freshness


@dataclass(frozen=True)
class KeyActivity:
    api_key_id: str
    requests: int
    total_tokens: int  # input + output
    total_cost: Decimal  # USD, exact


@dataclass(frozen=True)
class BusiestKeys:
    """At most ``limit`` keys of [start, end), the busiest first (most requests; ties by total tokens, cost, id)."""

    start: datetime
    end: datetime
    tz: str
    limit: int
    keys: tuple[KeyActivity, ...]
    freshness: Freshness


# _IN_RANGE without the scope: every key's windows starting in the range.
BUSIEST_KEYS_SQL = """
SELECT api_key_id, sum(requests) AS requests, sum(input_tokens) + sum(output_tokens) AS total_tokens,
       sum(total_cost) AS total_cost
FROM usage_15m
WHERE hour >= toDateTime({first_hour:UInt32}, 'UTC') AND hour < toDateTime({end_hour:UInt32}, 'UTC')
  AND window_start >= toDateTime({first_window:UInt32}, 'UTC') AND window_start < toDateTime({end_window:UInt32}, 'UTC')
GROUP BY api_key_id
HAVING requests > 0
ORDER BY requests DESC, total_tokens DESC, total_cost DESC, api_key_id
LIMIT {limit:UInt32}"""


@dataclass(frozen=True)
class SpikeAlert:
    """One usage-spike alert (docs/alerts.md): what fired (``model``, "*" for the key's total over its models,
    and ``metric``: tokens, requests or cost), when (``opened_at``; ``resolved_at`` None while open) and why
    (``rule``, ``reason``). ``value`` is the last observed usage of the last 60 minutes, ``peak`` the highest
    while open, ``threshold`` and ``baseline`` what it was compared with: all per hour, in the metric's unit
    (tokens, requests or USD; estimates, not ledger amounts)."""

    model: str
    metric: str
    status: str  # "firing" or "resolved"
    severity: str
    rule: str  # "baseline", "new_key" or "static"
    reason: str
    opened_at: datetime  # UTC
    resolved_at: datetime | None
    updated_at: datetime
    value: float
    peak: float
    threshold: float
    baseline: float

    @classmethod
    def of(cls, record: AlertRecord) -> "SpikeAlert":
        """From the alert runner's record (what channels were told is left out)."""
        return cls(record.key.model, record.key.metric, record.status, record.severity, record.rule, record.reason,
                   record.opened_at, record.resolved_at, record.updated_at, record.value, record.peak,
                   record.threshold, record.baseline)


@dataclass(frozen=True)
class KeyAlerts:
    request: UsageRequest
    alerts: tuple[SpikeAlert, ...]
