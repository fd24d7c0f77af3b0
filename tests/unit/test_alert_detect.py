"""The decision per series and metric: static rules, new keys, and the two baselines with floor, factor, MAD."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.alerts.baseline import SeriesStats, Stats, Window
from pipeline.alerts.detect import DetectionParams, drop_covered, evaluate, evaluate_metric, prefilter
from pipeline.alerts.model import AlertKey, Finding
from pipeline.alerts.rules import RuleSet, StaticRule
from pipeline.config import AlertSettings

PARAMS = DetectionParams.from_settings(AlertSettings(factor=3.0, mad_k=5.0, min_tokens=1000, min_requests=10,
                                                     min_cost_usd=1.0, new_key_tokens=50_000, new_key_requests=500,
                                                     new_key_cost_usd=20.0, min_history_hours=24))
NO_RULES = RuleSet()


def series(value: float, recent=(100.0, 0.0), same_hour=(100.0, 0.0), history_hours: int = 168,
           metric: str = "tokens", model: str = "*") -> SeriesStats:
    stats = Stats(value, *recent, *same_hour)
    zero = Stats(0, 0, 0, 0, 0)
    metrics = {m: (stats if m == metric else zero) for m in ("tokens", "requests", "cost")}
    return SeriesStats("key-1", model, history_hours, metrics)


def decide(s: SeriesStats, metric: str = "tokens", rules: RuleSet = NO_RULES):
    return evaluate_metric(s, metric, s.metrics[metric], PARAMS, rules)


def test_a_value_above_factor_times_both_baselines_and_the_floor_is_a_spike():
    finding = decide(series(3_500, recent=(1_000, 0), same_hour=(1_100, 0)))
    assert finding is not None and finding.rule == "baseline" and finding.severity == "warning"
    assert finding.threshold == 3_300 and finding.baseline == 1_100
    assert finding.key == AlertKey("key-1", "*", "tokens")
    assert decide(series(3_200, recent=(1_000, 0), same_hour=(1_100, 0))) is None


def test_the_mad_term_raises_the_threshold_of_noisy_series():
    # median 1000, MAD 400: 1000 + 5 x 1.4826 x 400 = 3965.2 > 3 x 1000
    assert decide(series(3_900, recent=(1_000, 400), same_hour=(0, 0))) is None
    assert decide(series(3_966, recent=(1_000, 400), same_hour=(0, 0))).threshold == pytest.approx(3_965.2)


def test_usual_for_this_hour_of_day_is_not_a_spike_even_if_unusual_for_the_week():
    # A key busy every day at this hour: the week's median is low, the same hour's is not.
    assert decide(series(9_000, recent=(500, 100), same_hour=(8_000, 500))) is None


def test_nothing_below_the_absolute_floor_pages_however_unusual():
    assert decide(series(999, recent=(1, 0), same_hour=(1, 0))) is None
    assert decide(series(1_001, recent=(0, 0), same_hour=(0, 0))).threshold == 1_000


def test_a_new_key_is_judged_by_the_new_key_floor_not_its_short_baseline():
    young = dict(recent=(10, 0), same_hour=(0, 0), history_hours=5)
    assert decide(series(40_000, **young)) is None  # would be 4000x its "baseline"
    finding = decide(series(60_000, **young))
    assert finding.rule == "new_key" and finding.threshold == 50_000 and "5 h of history" in finding.reason


def test_a_static_rule_fires_regardless_of_floor_and_baseline_and_wins():
    rules = RuleSet([StaticRule("cost", 0.5, "key-1", "*", "critical")])
    s = series(0.75, recent=(0.7, 0.1), same_hour=(0.7, 0.1), metric="cost")
    finding = decide(s, "cost", rules)
    assert finding.rule == "static" and finding.severity == "critical" and finding.threshold == 0.5
    assert decide(series(0.4, metric="cost", recent=(0, 0), same_hour=(0, 0)), "cost", rules) is None


def test_a_static_rule_also_applies_to_new_keys():
    rules = RuleSet([StaticRule("requests", 100)])
    assert decide(series(150, history_hours=0, metric="requests"), "requests", rules).rule == "static"


def test_evaluate_checks_every_metric_independently():
    s = SeriesStats("key-1", "gpt-4o", 168, {"tokens": Stats(10_000, 1_000, 0, 1_000, 0),
                                             "requests": Stats(20, 15, 1, 15, 1),
                                             "cost": Stats(9, 1, 0.1, 1, 0.1)})
    assert sorted(f.key.metric for f in evaluate(s, PARAMS, NO_RULES)) == ["cost", "tokens"]


def test_prefilter_is_the_least_value_any_rule_could_alert_on():
    rules = RuleSet([StaticRule("cost", 0.25), StaticRule("tokens", 10**9)])
    assert prefilter(PARAMS, rules) == {"tokens": 1000, "requests": 10, "cost": 0.25}


def test_window_slots_cover_history_last_hour_and_current_hour():
    window = Window(datetime(2026, 11, 25, 12, 45, tzinfo=UTC), 168)
    assert window.elapsed_fraction == 0.75 and window.slots == 170 and window.days == 7
    assert window.current_hour == int(datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp())
    assert window.start == window.current_hour - 169 * 3600


def found(key: str, model: str, metric: str = "tokens") -> Finding:
    return Finding(AlertKey(key, model, metric), 10.0, 3.0, 1.0, "baseline", "warning", "10.0x its normal")


def test_a_spike_of_a_key_and_its_model_is_paged_once_on_the_key():
    findings = {f.key: f for f in (found("k", "*"), found("k", "gpt-4o"), found("k", "o3"),
                                   found("k", "gpt-4o", "cost"), found("other", "gpt-4o"))}
    kept = drop_covered(findings, open_keys=set())
    assert set(kept) == {AlertKey("k", "*", "tokens"), AlertKey("k", "gpt-4o", "cost"),
                         AlertKey("other", "gpt-4o", "tokens")}
    assert kept[AlertKey("k", "*", "tokens")].reason == "10.0x its normal; driven by gpt-4o, o3"


def test_an_open_model_alert_stays_open_when_the_key_total_starts_firing_too():
    findings = {f.key: f for f in (found("k", "*"), found("k", "gpt-4o"))}
    kept = drop_covered(findings, open_keys={AlertKey("k", "gpt-4o", "tokens")})
    assert set(kept) == set(findings)


def test_a_static_rule_on_a_model_pages_even_when_the_key_total_fires():
    static = Finding(AlertKey("k", "gpt-4o", "cost"), 10.0, 5.0, 1.0, "static", "critical", "static rule")
    findings = {f.key: f for f in (found("k", "*", "cost"), static)}
    assert drop_covered(findings, open_keys=set()) == findings
