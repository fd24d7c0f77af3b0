"""The API-key usage view: summary, per-model breakdown, time series and peak hours, read from ``usage_hourly``.

Every number is summed by ClickHouse (rows are deltas: always ``sum() ... GROUP BY``); Python only derives
ratios from those sums and formats. All SQL lives in this module; user input reaches it only as bound
parameters (``{name:Type}``), and the few fragments spliced in (scope column, bucket expression) come from
fixed tables below.

Storage is per UTC hour. A stored hour counts in a range when its *start* lies in [from, to), and in the
local day/week/month its start falls in. In zones with a non-whole-hour offset (Asia/Kolkata, Asia/Kathmandu,
Australia/Adelaide) that shifts day boundaries by the fractional part (a Kolkata "day" holds the hours starting
00:30 .. 23:30 local), and hourly buckets are UTC hours labelled in local time (00:30+05:30).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from string import Template

from clickhouse_connect.driver.client import Client

from pipeline.measures import CACHE_READ_TOKENS, CACHE_WRITE_TOKENS, ERROR_REQUESTS, INPUT_COST, INPUT_TOKENS, \
    OUTPUT_COST, OUTPUT_TOKENS, REASONING_TOKENS, REQUESTS, TOTAL_COST, UNIT_COSTS, UNITS, UNPRICED_REQUESTS, Measure
from pipeline.usage.ranges import SCOPES, Period, QueryError, UsageRequest, bucket_start

# Money sums keep all 24 decimals; derived ratios are rounded half-even to these places.
AVERAGE_PLACES = Decimal("0.01")
RATIO_PLACES = Decimal("0.0001")
SHARE_PLACES = Decimal("0.000001")
ORDERS = {"cost": "total_cost DESC, requests DESC", "requests": "requests DESC, total_cost DESC"}

# Bucket key and WITH FILL step per granularity. Hourly buckets are UTC epoch seconds (no zone arithmetic);
# longer ones are local calendar dates, so DST days (23 or 25 hours) fall out of ClickHouse's tz functions.
BUCKETS = {
    "hour": ("toUnixTimestamp(hour)", "UInt32", "3600"),
    "day": ("toDate(hour, {tz:String})", "Date", "toIntervalDay(1)"),
    "week": ("toMonday(hour, {tz:String})", "Date", "toIntervalWeek(1)"),
    "month": ("toStartOfMonth(hour, {tz:String})", "Date", "toIntervalMonth(1)"),
}

_IN_RANGE = ("$scope = {scope_id:String} AND hour >= toDateTime({first_hour:UInt32}, 'UTC') "
             "AND hour < toDateTime({end_hour:UInt32}, 'UTC')")
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

SUMMARY_SQL = f"SELECT {_SUMS} FROM usage_hourly WHERE {_IN_RANGE}"
MODELS_SQL = f"""
SELECT model, provider, {_SUMS}
FROM usage_hourly WHERE {_IN_RANGE}
GROUP BY model, provider
ORDER BY $order, model, provider"""
SERIES_SQL = f"""
SELECT $bucket AS bucket, {sums(SERIES_MEASURES)}
FROM usage_hourly WHERE {_IN_RANGE}
GROUP BY bucket
ORDER BY bucket WITH FILL FROM {{fill_from:$fill_type}} TO {{fill_to:$fill_type}} STEP $step"""
PEAK_HOURS_SQL = f"""
SELECT toHour(hour, {{tz:String}}) AS hour_of_day, sum(requests) AS requests,
       sum(input_tokens) + sum(output_tokens) AS total_tokens
FROM usage_hourly WHERE {_IN_RANGE}
GROUP BY hour_of_day
ORDER BY hour_of_day WITH FILL FROM 0 TO 24"""
EXPORT_SQL = f"""
SELECT $bucket AS bucket, api_key_id, model, provider, {sums(EXPORT_MEASURES)},
       arrayStringConcat(arraySort(arrayFilter(v -> v != '', groupUniqArray(price_version))), ';') AS price_version
FROM usage_hourly WHERE {_IN_RANGE}
GROUP BY bucket, api_key_id, model, provider
ORDER BY bucket, api_key_id, model, provider"""
EVER_USED_SQL = "SELECT count() FROM (SELECT 1 FROM usage_hourly WHERE $scope = {scope_id:String} LIMIT 1)"


@dataclass(frozen=True)
class Totals:
    """Sums over a range. ``total_tokens`` = input + output. Derived ratios are None when their denominator
    is zero: ``avg_tokens_per_request`` (total / requests, 2 places) and ``output_input_ratio`` (output /
    input, 4 places), both rounded half-even.

    ``units``: every non-zero unit events reported beyond the token columns (genai-prices unit name -> count:
    ``input_audio_tokens``, ``cache_write_1h_tokens``, ``web_searches``, ...; they are parts of the token
    columns, see pipeline/units.py). ``unit_costs``: USD by priced unit, non-zero only; they sum to
    ``total_cost`` exactly."""

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
class Summary:
    request: UsageRequest
    status: Status
    totals: Totals


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


@dataclass(frozen=True)
class HourOfDay:
    hour: int  # 0..23 in the requested zone (the local hour in which the stored UTC hour starts)
    requests: int
    total_tokens: int


@dataclass(frozen=True)
class PeakHours:
    request: UsageRequest
    status: Status
    hours: tuple[HourOfDay, ...]


@dataclass(frozen=True)
class KeyList:
    """The api_key_ids with recorded usage that start with ``prefix``, sorted; ``truncated`` when more than
    ``limit`` match (narrow the prefix)."""

    prefix: str
    limit: int
    truncated: bool
    keys: tuple[str, ...]


# Any usage row makes a key known (the same test as the "unknown" state). The primary key starts with
# (kind, api_key_id), so a prefix reads only the matching part of the index.
KEYS_SQL = ("SELECT DISTINCT api_key_id FROM usage_hourly WHERE startsWith(api_key_id, {prefix:String}) "
            "ORDER BY api_key_id LIMIT {limit:UInt32}")


# Models that were counted without a price, over every key: what an operator should alias or price
# (docs/pricing.md). A stored row counts when its hour starts in [from, to), as for every other answer.
UNPRICED_SQL = """
SELECT model, provider, sum(unpriced_requests) AS requests, uniqExact(api_key_id) AS keys,
       min(hour) AS first_hour, max(hour) AS last_hour
FROM usage_hourly
WHERE unpriced_requests > 0 AND hour >= toDateTime({start:UInt32}, 'UTC') AND hour < toDateTime({end:UInt32}, 'UTC')
GROUP BY model, provider
ORDER BY requests DESC, model, provider
LIMIT {limit:UInt32}"""


@dataclass(frozen=True)
class UnpricedModel:
    """A model x provider counted without a price: its unpriced requests, how many keys sent them, and the
    first and last stored hour (UTC) that held one."""

    model: str
    provider: str
    requests: int
    keys: int
    first_hour: datetime
    last_hour: datetime


@dataclass(frozen=True)
class UnpricedModels:
    """Every model counted without a price in [start, end), most requests first (``truncated``: more than
    ``limit`` models)."""

    start: datetime
    end: datetime
    limit: int
    truncated: bool
    models: tuple[UnpricedModel, ...]


class UsageQueries:
    """Answers for one key, org or project over a range. Synchronous: give it its own thread."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def keys(self, prefix: str, limit: int) -> KeyList:
        # One row more than asked tells whether the list was cut.
        rows = self._client.query(KEYS_SQL, parameters={"prefix": prefix, "limit": limit + 1}).result_rows
        return KeyList(prefix, limit, len(rows) > limit, tuple(row[0] for row in rows[:limit]))

    def unpriced(self, period: Period, limit: int = 1000) -> UnpricedModels:
        """Models counted without a price in the period, over every key (admin only in the API)."""
        rows = list(self._client.query(UNPRICED_SQL, parameters={
            "start": _ceil_seconds(period.start), "end": _ceil_seconds(period.end), "limit": limit + 1}
        ).named_results())
        models = tuple(UnpricedModel(row["model"], row["provider"], row["requests"], row["keys"],
                                     row["first_hour"].replace(tzinfo=UTC), row["last_hour"].replace(tzinfo=UTC))
                       for row in rows[:limit])
        return UnpricedModels(period.start, period.end, limit, len(rows) > limit, models)

    def summary(self, request: UsageRequest) -> Summary:
        totals = Totals.from_sums(self._named(SUMMARY_SQL, request)[0])
        return Summary(request, self._status(request, totals.requests > 0), totals)

    def models(self, request: UsageRequest, order: str = "cost") -> ModelBreakdown:
        if order not in ORDERS:
            raise QueryError("unknown order", f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        rows = self._named(MODELS_SQL, request, order=ORDERS[order])
        all_requests = sum(row["requests"] for row in rows)  # a handful of per-model sums, not raw rows
        models = tuple(ModelUsage(row["model"], row["provider"],
                                  _ratio(row["requests"], all_requests, SHARE_PLACES) or Decimal(0),
                                  Totals.from_sums(row)) for row in rows)
        return ModelBreakdown(request, self._status(request, bool(rows)), order, all_requests, models)

    def series(self, request: UsageRequest) -> Series:
        fill_from, fill_to = request.fill_bounds()
        rows = self._named(SERIES_SQL, request, fill_from=fill_from, fill_to=fill_to)
        buckets = tuple(SeriesBucket(start=bucket_start(row.pop("bucket"), request.granularity, request.zone),
                                     total_tokens=row["input_tokens"] + row["output_tokens"], **row)
                        for row in rows)
        return Series(request, self._status(request, any(b.requests for b in buckets)), buckets)

    def peak_hours(self, request: UsageRequest) -> PeakHours:
        hours = tuple(HourOfDay(row["hour_of_day"], row["requests"], row["total_tokens"])
                      for row in self._named(PEAK_HOURS_SQL, request))
        return PeakHours(request, self._status(request, any(h.requests for h in hours)), hours)

    def export_blocks(self, request: UsageRequest, block_rows: int = 2048) -> AbstractContextManager:
        """A clickhouse-connect row-block stream of bucket x key x model x provider rows (see EXPORT_SQL),
        ``block_rows`` rows at most per block, so a caller holds one block in memory at a time."""
        sql, parameters = self._bind(EXPORT_SQL, request)
        return self._client.query_row_block_stream(sql, parameters=parameters,
                                                   settings={"max_block_size": block_rows})

    def _status(self, request: UsageRequest, has_usage: bool) -> Status:
        if has_usage:
            return Status(True, "usage", "")
        what = f"{request.scope} {request.scope_id!r}"
        if self._rows(EVER_USED_SQL, request)[0][0]:
            return Status(False, "no_requests_in_period",
                          f"no requests in this period: {what} has no usage from {request.start.isoformat()} "
                          f"to {request.end.isoformat()} ({request.tz})")
        return Status(False, "unknown",
                      f"unknown {request.scope}: {what} has no recorded usage at all (never used, or not an id "
                      "meterline has seen)")

    def _rows(self, template: str, request: UsageRequest, **extra) -> list[tuple]:
        sql, parameters = self._bind(template, request, **extra)
        return self._client.query(sql, parameters=parameters).result_rows

    def _named(self, template: str, request: UsageRequest, **extra) -> list[dict]:
        """Rows as dicts keyed by the SELECT's column names."""
        sql, parameters = self._bind(template, request, **extra)
        return list(self._client.query(sql, parameters=parameters).named_results())

    @staticmethod
    def _bind(template: str, request: UsageRequest, order: str = "", **extra) -> tuple[str, dict]:
        bucket, fill_type, step = BUCKETS[request.granularity]
        sql = Template(template).substitute(scope=SCOPES[request.scope], bucket=bucket, fill_type=fill_type,
                                            step=step, order=order)
        parameters = {"scope_id": request.scope_id, "tz": request.tz, "first_hour": request.first_hour_epoch,
                      "end_hour": request.end_hour_epoch, **extra}
        return sql, parameters


def _ceil_seconds(instant: datetime) -> int:
    """Epoch seconds of the first whole second at or after ``instant``."""
    seconds = instant.timestamp()
    return int(seconds) if seconds == int(seconds) else int(seconds) + 1


def non_zero(summed: dict) -> dict:
    """A summed Map without its zero entries, keys sorted (sumMap keeps keys whose sum is 0)."""
    return {key: summed[key] for key in sorted(summed) if summed[key]}


def _ratio(numerator: int, denominator: int, places: Decimal) -> Decimal | None:
    if not denominator:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(places, rounding=ROUND_HALF_EVEN)
