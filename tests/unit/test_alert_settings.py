"""METERLINE_ALERTS_* settings and the channels they enable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.alerts.channels import channels_from_settings
from pipeline.config import AlertSettings, ConfigError, load_settings


def test_defaults_need_no_environment():
    alerts = load_settings({}).alerts
    assert alerts == AlertSettings()
    assert channels_from_settings(alerts) == []


def test_every_setting_is_read_from_its_variable():
    alerts = load_settings({
        "METERLINE_ALERTS_INTERVAL": "30s", "METERLINE_ALERTS_HISTORY_HOURS": "72", "METERLINE_ALERTS_FACTOR": "2.5",
        "METERLINE_ALERTS_MAD_K": "4", "METERLINE_ALERTS_MIN_COST_USD": "0.5", "METERLINE_ALERTS_NEW_KEY_TOKENS": "1e6",
        "METERLINE_ALERTS_RULES_FILE": "/etc/meterline/rules.toml", "METERLINE_ALERTS_RESOLVE_AFTER_RUNS": "3",
        "METERLINE_ALERTS_RENOTIFY_INTERVAL": "4h", "METERLINE_ALERTS_GRAFANA_URL": "https://g.example/",
        "METERLINE_ALERTS_ALERTMANAGER_URL": "http://am:9093", "METERLINE_ALERTS_WEBHOOK_URL": "http://hook",
        "METERLINE_ALERTS_SLACK_WEBHOOK_URL": "https://hooks.slack.example/x",
        "METERLINE_ALERTS_PAGERDUTY_ROUTING_KEY": "rk", "METERLINE_ALERTS_BUDGET_CLAIM_LEASE": "5m",
    }).alerts
    assert (alerts.interval_s, alerts.history_hours, alerts.factor, alerts.mad_k) == (30.0, 72, 2.5, 4.0)
    assert (alerts.min_cost_usd, alerts.new_key_tokens, alerts.resolve_after_runs) == (0.5, 1e6, 3)
    assert alerts.rules_file == Path("/etc/meterline/rules.toml") and alerts.renotify_interval_s == 4 * 3600
    assert alerts.grafana_url == "https://g.example" and alerts.budget_claim_lease_s == 300
    assert [c.name for c in channels_from_settings(alerts)] == ["alertmanager", "webhook", "slack", "pagerduty"]


@pytest.mark.parametrize("name,value", [("METERLINE_ALERTS_FACTOR", "lots"), ("METERLINE_ALERTS_MIN_TOKENS", "-1"),
                                        ("METERLINE_ALERTS_MIN_TOKENS", "nan"),
                                        ("METERLINE_ALERTS_HISTORY_HOURS", "12"),
                                        ("METERLINE_ALERTS_RESOLVE_AFTER_RUNS", "0"),
                                        ("METERLINE_ALERTS_BUDGET_CLAIM_LEASE", "1s"),
                                        ("METERLINE_BUDGET_TREND_DAYS", "0")])
def test_bad_values_name_their_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_the_budget_trend_window_is_read_from_its_variable():
    assert load_settings({}).budgets.trend_days == 7
    assert load_settings({"METERLINE_BUDGET_TREND_DAYS": "14"}).budgets.trend_days == 14
