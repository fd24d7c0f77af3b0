"""Static thresholds from a TOML rules file (``METERLINE_ALERTS_RULES_FILE``).

```toml
[[static]]                 # every key: more than $50 in an hour pages
metric = "cost"            # tokens | requests | cost (USD)
max_per_hour = 50
severity = "critical"      # optional (default critical): critical | error | warning | info

[[static]]                 # this key may spend more: overrides the global rule for its total
metric = "cost"
max_per_hour = 500
api_key_id = "key-batch-jobs"

[[static]]                 # one model of every key (omit model, or "*", for the key's total)
metric = "tokens"
max_per_hour = 50_000_000
model = "gpt-4o"
```

A rule applies to the series (key total, or key x model) it names; for a series, a rule naming its key wins
over a rule for every key. Static rules ignore the absolute floors and the baseline: they are explicit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipeline.alerts.model import ALL_MODELS, METRICS, SEVERITIES
from pipeline.config import ConfigError

_FIELDS = {"metric", "max_per_hour", "api_key_id", "model", "severity"}


@dataclass(frozen=True)
class StaticRule:
    metric: str
    max_per_hour: float
    api_key_id: str | None = None  # None: every key
    model: str = ALL_MODELS
    severity: str = "critical"

    def describe(self) -> str:
        scope = f"key {self.api_key_id}" if self.api_key_id else "every key"
        model = "in total" if self.model == ALL_MODELS else f"on model {self.model}"
        return f"static rule: {self.metric} above {self.max_per_hour:g}/h for {scope} {model}"


class RuleSet:
    """The static rules, indexed by the series they apply to."""

    def __init__(self, rules: list[StaticRule] | tuple[StaticRule, ...] = ()) -> None:
        self.rules = tuple(rules)
        self._index: dict[tuple[str | None, str, str], StaticRule] = {}
        for rule in self.rules:
            where = (rule.api_key_id, rule.model, rule.metric)
            if where in self._index:
                raise ConfigError(f"alert rules: two static rules for {_where(rule)}")
            self._index[where] = rule

    @classmethod
    def load(cls, path: Path | None) -> "RuleSet":
        if path is None:
            return cls()
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"METERLINE_ALERTS_RULES_FILE: cannot read {path}: {error}") from None
        unknown = set(document) - {"static"}
        if unknown:
            raise ConfigError(f"{path}: unknown sections {sorted(unknown)} (only [[static]])")
        return cls([_parse_rule(entry, f"{path}: static rule {i + 1}")
                    for i, entry in enumerate(document.get("static", []))])

    def rule_for(self, api_key_id: str, model: str, metric: str) -> StaticRule | None:
        return self._index.get((api_key_id, model, metric)) or self._index.get((None, model, metric))

    def lowest_threshold(self, metric: str) -> float | None:
        thresholds = [r.max_per_hour for r in self.rules if r.metric == metric]
        return min(thresholds) if thresholds else None


def _parse_rule(entry: object, where: str) -> StaticRule:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)} (allowed: {sorted(_FIELDS)})")
    metric = entry.get("metric")
    if metric not in METRICS:
        raise ConfigError(f"{where}: metric must be one of {list(METRICS)}, got {metric!r}")
    limit = entry.get("max_per_hour")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 0:
        raise ConfigError(f"{where}: max_per_hour must be a number >= 0, got {limit!r}")
    severity = entry.get("severity", "critical")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity must be one of {list(SEVERITIES)}, got {severity!r}")
    key, model = entry.get("api_key_id"), entry.get("model", ALL_MODELS)
    for name, value in (("api_key_id", key), ("model", model)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: {name} must be a non-empty string")
    return StaticRule(metric, float(limit), key, model, severity)


def _where(rule: StaticRule) -> str:
    return f"metric {rule.metric}, key {rule.api_key_id or 'any'}, model {rule.model}"
