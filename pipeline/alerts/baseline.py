"""The detection query: current usage and its baselines for every key and key x model, in ONE ClickHouse query.

Per series (a key's total, model ``*``, and each key x model) and metric (tokens = input + output, requests,
cost in USD), over zero-filled hourly values read from ``usage_hourly``:

* **value**: usage in the last 60 minutes, estimated as ``(1 - f) x last full hour + current partial hour``
  where ``f`` is the elapsed fraction of the current hour. It is always a full hour's worth, so it compares
  with hourly baselines without extrapolating a few minutes (a burst at :00 is not multiplied by 12), and it
  follows a spike from its first minutes: a 10x spike is above 3x after ~15 minutes.
* **recent**: median and MAD of the ``history_hours`` full hours before the last one (the last one is part of
  the value). Hours without usage count as zeros, from the series' first usage in the lookback on; hours
  before it do not count (a 2-day-old key has 48 hours of history, not 166 zeros).
* **same_hour**: median and MAD of the same 60-minute window on each previous day (``history_hours / 24``
  days), from the first usage on.
* **history_hours**: full hours since the series' first usage in the lookback (new keys have few).

Everything is computed by ClickHouse with dense per-series arrays (``groupArrayInsertAt``); Python gets one
row per series whose value reaches ``prefilter`` for some metric, which is every series that could alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from pipeline.alerts.model import METRICS
from pipeline.clock import HOUR_S

# Sum expression of each metric over usage_hourly rows (rows are deltas: always summed).
METRIC_SUMS = {
    "tokens": "toFloat64(sum(input_tokens + output_tokens))",
    "requests": "toFloat64(sum(requests))",
    "cost": "toFloat64(sum(total_cost))",
}
STAT_COLUMNS = ("value", "recent_median", "recent_mad", "same_hour_median", "same_hour_mad")


@dataclass(frozen=True)
class Window:
    """The hours one run reads: slot 0 is the oldest, slot ``slots - 1`` the current (partial) hour."""

    now: datetime
    history_hours: int

    @property
    def current_hour(self) -> int:
        return int(self.now.timestamp()) // HOUR_S * HOUR_S

    @property
    def elapsed_fraction(self) -> float:
        return (self.now.timestamp() - self.current_hour) / HOUR_S

    @property
    def slots(self) -> int:
        return self.history_hours + 2  # the history, the last full hour, the current hour

    @property
    def start(self) -> int:
        return self.current_hour - (self.slots - 1) * HOUR_S

    @property
    def days(self) -> int:
        return self.history_hours // 24


@dataclass(frozen=True)
class Stats:
    value: float
    recent_median: float
    recent_mad: float
    same_hour_median: float
    same_hour_mad: float


@dataclass(frozen=True)
class SeriesStats:
    api_key_id: str
    model: str
    history_hours: int
    metrics: dict[str, Stats]  # by metric name


def _metric_expressions(metric: str) -> tuple[str, str]:
    """(middle-level columns, outer-level columns) of one metric; names are fixed, never user input."""
    h = f"{metric}_by_hour"
    middle = f"""
        (1 - {{f:Float64}}) * {h}[{{slots:Int64}} - 1] + {h}[{{slots:Int64}}] AS {metric}_value,
        arraySlice({h}, first_slot + 1, greatest({{slots:Int64}} - 2 - first_slot, 0)) AS {metric}_recent,
        arrayMap(d -> (1 - {{f:Float64}}) * {h}[{{slots:Int64}} - 1 - 24 * d]
                      + {{f:Float64}} * {h}[{{slots:Int64}} - 24 * d],
                 arrayFilter(d -> {{slots:Int64}} - 2 - 24 * d >= first_slot, range(1, {{days:Int64}} + 1)))
            AS {metric}_same_hour"""
    outer = f"""
        {metric}_value,
        ifNotFinite(arrayReduce('quantileExactInclusive(0.5)', {metric}_recent), 0) AS {metric}_recent_median,
        ifNotFinite(arrayReduce('quantileExactInclusive(0.5)',
            arrayMap(x -> abs(x - {metric}_recent_median), {metric}_recent)), 0) AS {metric}_recent_mad,
        ifNotFinite(arrayReduce('quantileExactInclusive(0.5)', {metric}_same_hour), 0) AS {metric}_same_hour_median,
        ifNotFinite(arrayReduce('quantileExactInclusive(0.5)',
            arrayMap(x -> abs(x - {metric}_same_hour_median), {metric}_same_hour)), 0) AS {metric}_same_hour_mad"""
    return middle, outer


def build_query(slots: int) -> str:
    """The detection SQL. ``slots`` is spliced as a literal: an aggregate function's parameter must be one.

    Innermost: hourly sums per key x hour x model, aggregated in the table's sort order (fast). Then one dense
    array per key x model; ARRAY JOIN adds each to its key's ``*`` series, summed element-wise.
    """
    sums = ",\n                ".join(f"{expr} AS {m}" for m, expr in METRIC_SUMS.items())
    arrays = ",\n            ".join(f"groupArrayInsertAt(toFloat64(0), {int(slots)})({m}, slot) AS {m}_by_model"
                                    for m in METRICS)
    totals = ", ".join(f"sumForEach({m}_by_model) AS {m}_by_hour" for m in METRICS)
    middles, outers = zip(*(_metric_expressions(m) for m in METRICS))
    prefilter = " OR ".join(f"{m}_value >= {{min_{m}:Float64}}" for m in METRICS)
    return f"""
SELECT api_key_id, model, history_hours, {", ".join(outers)}
FROM (
    SELECT api_key_id, model, {{slots:Int64}} - 2 - first_slot AS history_hours, {", ".join(middles)}
    FROM (
        SELECT api_key_id, scope_model AS model, min(model_first_slot) AS first_slot, {totals}
        FROM (
            SELECT api_key_id, model, toInt64(min(slot)) AS model_first_slot,
            {arrays}
            FROM (
                SELECT api_key_id, hour, model, toUInt32(intDiv(toUInt32(hour) - {{start:UInt32}}, 3600)) AS slot,
                {sums}
                FROM usage_hourly
                WHERE hour >= toDateTime({{start:UInt32}}, 'UTC') AND hour <= toDateTime({{current:UInt32}}, 'UTC')
                GROUP BY api_key_id, hour, model
            )
            GROUP BY api_key_id, model
        )
        ARRAY JOIN [model, '*'] AS scope_model
        GROUP BY api_key_id, scope_model
    )
    WHERE {prefilter}
)
SETTINGS optimize_aggregation_in_order = 1
"""


def query_parameters(window: Window, prefilter: dict[str, float]) -> dict:
    return {
        "f": window.elapsed_fraction, "slots": window.slots, "days": window.days,
        "start": window.start, "current": window.current_hour,
        **{f"min_{metric}": float(prefilter[metric]) for metric in METRICS},
    }


def parse_row(row: tuple) -> SeriesStats:
    api_key_id, model, history_hours, *numbers = row
    metrics = {}
    for i, metric in enumerate(METRICS):
        values = [_finite(v) for v in numbers[i * len(STAT_COLUMNS):(i + 1) * len(STAT_COLUMNS)]]
        metrics[metric] = Stats(*values)
    return SeriesStats(api_key_id, model, max(int(history_hours), 0), metrics)


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0
