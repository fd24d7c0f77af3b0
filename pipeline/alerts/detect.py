"""Deciding which series are spiking, from the numbers ClickHouse computed (pipeline/alerts/baseline.py).

For one series and metric, in order (the first that applies decides):

1. **static**: a static rule for the series (rules.py) and value > its ``max_per_hour``;
2. **new_key**: fewer than ``min_history_hours`` hours of history, and value > the new-key floor;
   a new series is never compared with its (meaningless) baseline;
3. **baseline**: value > ``max(floor, T(recent), T(same hour))`` where
   ``T(b) = max(factor x median_b, median_b + k x 1.4826 x MAD_b)``: it must be unusual both for the last
   week and for this hour of the day (a key busy every weekday at 10:00 is not a spike at 10:00).

Then ``drop_covered``: a spike of a key's total and of one of its models is one spike, paged once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from pipeline.alerts.baseline import SeriesStats, Stats, Window, build_query, parse_row, query_parameters
from pipeline.alerts.model import ALL_MODELS, METRICS, AlertKey, Finding
from pipeline.alerts.rules import RuleSet
from pipeline.clickhouse import ClickHouse
from pipeline.config import AlertSettings

# MAD x 1.4826 estimates the standard deviation of normally distributed values, robustly.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class DetectionParams:
    history_hours: int
    min_history_hours: int
    factor: float
    mad_k: float
    floors: dict[str, float]  # per metric: below it the baseline rule never fires
    new_key_floors: dict[str, float]  # per metric: what a series without history must exceed
    severity: str  # of baseline and new-key alerts

    @classmethod
    def from_settings(cls, s: AlertSettings) -> "DetectionParams":
        return cls(
            history_hours=s.history_hours, min_history_hours=s.min_history_hours, factor=s.factor, mad_k=s.mad_k,
            floors={"tokens": s.min_tokens, "requests": s.min_requests, "cost": s.min_cost_usd},
            new_key_floors={"tokens": s.new_key_tokens, "requests": s.new_key_requests, "cost": s.new_key_cost_usd},
            severity=s.severity,
        )


def baseline_threshold(median: float, mad: float, params: DetectionParams) -> float:
    return max(params.factor * median, median + params.mad_k * MAD_SCALE * mad)


def evaluate(series: SeriesStats, params: DetectionParams, rules: RuleSet) -> list[Finding]:
    findings = []
    for metric in METRICS:
        finding = evaluate_metric(series, metric, series.metrics[metric], params, rules)
        if finding is not None:
            findings.append(finding)
    return findings


def evaluate_metric(series: SeriesStats, metric: str, stats: Stats, params: DetectionParams,
                    rules: RuleSet) -> Finding | None:
    key = AlertKey(series.api_key_id, series.model, metric)
    value = stats.value
    normal = max(stats.recent_median, stats.same_hour_median)
    rule = rules.rule_for(series.api_key_id, series.model, metric)
    if rule is not None and value > rule.max_per_hour:
        return Finding(key, value, rule.max_per_hour, normal, "static", rule.severity, rule.describe())
    if series.history_hours < params.min_history_hours:
        floor = params.new_key_floors[metric]
        if value > floor:
            reason = (f"new usage ({series.history_hours} h of history) above the new-key floor of "
                      f"{floor:g}/h")
            return Finding(key, value, floor, 0.0, "new_key", params.severity, reason)
        return None
    recent = baseline_threshold(stats.recent_median, stats.recent_mad, params)
    same_hour = baseline_threshold(stats.same_hour_median, stats.same_hour_mad, params)
    threshold = max(params.floors[metric], recent, same_hour)
    if value > threshold:
        ratio = f"{value / normal:.1f}x" if normal > 0 else "far above"
        reason = (f"{ratio} its normal: median {stats.recent_median:g}/h over the last {params.history_hours} h, "
                  f"{stats.same_hour_median:g} at this hour on previous days")
        return Finding(key, value, threshold, normal, "baseline", params.severity, reason)
    return None


def drop_covered(findings: dict[AlertKey, Finding], open_keys: set[AlertKey]) -> dict[AlertKey, Finding]:
    """One page per spike: a key x model finding whose key total fires for the same metric is left out (the
    total's reason names the model), unless that key x model alert is already open or a static rule (explicit,
    with its own severity) fired it. Key x model alerts thus page for spikes the key's other models hide."""
    kept: dict[AlertKey, Finding] = {}
    covered: dict[AlertKey, list[str]] = {}
    for key, finding in findings.items():
        total = AlertKey(key.api_key_id, ALL_MODELS, key.metric)
        if key.model != ALL_MODELS and total in findings and finding.rule != "static":
            covered.setdefault(total, []).append(key.model)
            if key not in open_keys:
                continue
        kept[key] = finding
    for total, models in covered.items():
        kept[total] = replace(kept[total], reason=f"{kept[total].reason}; driven by {', '.join(sorted(models))}")
    return kept


def prefilter(params: DetectionParams, rules: RuleSet) -> dict[str, float]:
    """Per metric, the least value any rule could alert on: series below it for every metric are skipped."""
    lows = {}
    for metric in METRICS:
        candidates = [params.floors[metric], params.new_key_floors[metric]]
        static = rules.lowest_threshold(metric)
        if static is not None:
            candidates.append(static)
        lows[metric] = min(candidates)
    return lows


class Detector:
    """Runs the detection query for every key at once and returns what is spiking now."""

    def __init__(self, clickhouse: ClickHouse, params: DetectionParams, rules: RuleSet) -> None:
        self._clickhouse = clickhouse
        self._params = params
        self._rules = rules

    async def series(self, now: datetime) -> list[SeriesStats]:
        """Every series whose current value could alert (see ``prefilter``), with its baselines."""
        window = Window(now, self._params.history_hours)
        rows = await self._clickhouse.query_rows(
            build_query(window.slots), query_parameters(window, prefilter(self._params, self._rules)))
        return [parse_row(row) for row in rows]

    async def detect(self, now: datetime) -> dict[AlertKey, Finding]:
        findings = {}
        for series in await self.series(now):
            for finding in evaluate(series, self._params, self._rules):
                findings[finding.key] = finding
        return findings
