"""The budget status CSV: one row per budget with the same figures as the API's JSON (and the usage page's
budget bar). Money and shares are exact decimal text (no exponent); instants are RFC 3339 in the budget's
zone (``as_of`` in UTC); lists are joined with ';'.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from pipeline.budgets.status import BudgetStatus
from pipeline.usage.export import decimal_text

CSV_COLUMNS = (
    "scope", "scope_id", "period", "tz", "amount_usd", "thresholds", "period_start", "period_end", "as_of",
    "spent_usd", "used_share", "thresholds_crossed", "state", "trend_since", "daily_rate_usd", "projected_usd",
    "projected_share", "projected_exceed_at",
)


def status_row(s: BudgetStatus) -> list[str]:
    b = s.budget
    return [b.scope, b.scope_id, b.period, b.tz, decimal_text(b.amount_usd), _join(b.thresholds),
            s.period_start.isoformat(), s.period_end.isoformat(), s.as_of.isoformat(), decimal_text(s.spent_usd),
            decimal_text(s.used_share), _join(s.thresholds_crossed), s.state, s.trend_since.isoformat(),
            decimal_text(s.daily_rate_usd), decimal_text(s.projected_usd), decimal_text(s.projected_share),
            s.projected_exceed_at.isoformat() if s.projected_exceed_at else ""]


def status_csv(statuses: Iterable[BudgetStatus]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(status_row(s) for s in statuses)
    return out.getvalue()


def _join(values: Iterable[int]) -> str:
    return ";".join(str(v) for v in values)
