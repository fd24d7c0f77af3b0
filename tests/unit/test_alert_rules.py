"""The static rules file: parsing, validation with clear messages, and which rule applies to which series."""

from __future__ import annotations

import pytest

from pipeline.alerts.rules import RuleSet, StaticRule
from pipeline.config import ConfigError

RULES = """
[[static]]
metric = "cost"
max_per_hour = 50

[[static]]
metric = "cost"
max_per_hour = 500.5
api_key_id = "key-batch"
severity = "warning"

[[static]]
metric = "tokens"
max_per_hour = 50_000_000
model = "gpt-4o"
"""


def load(tmp_path, text: str) -> RuleSet:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return RuleSet.load(path)


def test_a_key_rule_overrides_the_global_rule_for_that_key_only(tmp_path):
    rules = load(tmp_path, RULES)
    assert rules.rule_for("key-a", "*", "cost") == StaticRule("cost", 50.0)
    assert rules.rule_for("key-batch", "*", "cost") == StaticRule("cost", 500.5, "key-batch", "*", "warning")
    assert rules.rule_for("key-a", "gpt-4o", "cost") is None  # the global cost rule is for key totals
    assert rules.rule_for("key-a", "gpt-4o", "tokens").max_per_hour == 50_000_000
    assert rules.rule_for("key-a", "*", "requests") is None


def test_lowest_threshold_per_metric_feeds_the_prefilter(tmp_path):
    rules = load(tmp_path, RULES)
    assert rules.lowest_threshold("cost") == 50.0
    assert rules.lowest_threshold("requests") is None


def test_no_file_means_no_rules():
    assert RuleSet.load(None).rules == ()


@pytest.mark.parametrize("text,message", [
    ('[[static]]\nmetric = "money"\nmax_per_hour = 1', "metric must be one of"),
    ('[[static]]\nmetric = "cost"', "max_per_hour must be a number"),
    ('[[static]]\nmetric = "cost"\nmax_per_hour = -1', "max_per_hour must be a number"),
    ('[[static]]\nmetric = "cost"\nmax_per_hour = true', "max_per_hour must be a number"),
    ('[[static]]\nmetric = "cost"\nmax_per_hour = 1\nseverity = "page"', "severity must be one of"),
    ('[[static]]\nmetric = "cost"\nmax_per_hour = 1\nkey = "k"', "unknown fields ['key']"),
    ('[[static]]\nmetric = "cost"\nmax_per_hour = 1\napi_key_id = ""', "api_key_id must be a non-empty string"),
    ('[[static]]\nmetric = "cost"\nmax_per_hour = 1\n[[static]]\nmetric = "cost"\nmax_per_hour = 2',
     "two static rules"),
    ('[other]\nx = 1', "unknown sections"),
    ('[[static]\n', "cannot read"),
])
def test_bad_rules_files_are_config_errors_that_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ConfigError, match="rule|static|METERLINE_ALERTS_RULES_FILE") as error:
        load(tmp_path, text)
    assert message in str(error.value)
