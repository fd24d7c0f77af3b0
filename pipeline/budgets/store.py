"""The ``budgets`` table (schemas/migrations/0004_budgets.sql): list, set and delete budgets.

Every change is a new row with a higher version (ReplacingMergeTree(version, deleted), read with FINAL); a
delete writes a row with deleted = 1, which FINAL leaves out. The version is the change's time in
microseconds, and always above every stored version of the same budget (deleted ones included), so a change
made right after another one still wins. Synchronous: give it its own thread (ClickHouse.run).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from pipeline.budgets.model import Budget, BudgetKey
from pipeline.usage.ranges import SCOPES

COLUMNS = ("scope", "scope_id", "period", "amount_usd", "tz", "thresholds", "updated_at", "deleted", "version")
_SELECT = "SELECT scope, scope_id, period, amount_usd, tz, thresholds, updated_at FROM budgets FINAL"
_FILTER = " WHERE scope = {scope:String} AND scope_id = {scope_id:String}"
_ORDER = " ORDER BY scope, scope_id, indexOf(['day', 'week', 'month'], period)"
_LAST_VERSION = ("SELECT max(version) FROM budgets WHERE scope = {scope:String} AND scope_id = {scope_id:String} "
                 "AND period = {period:String}")


class BudgetStore:
    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self, scope: str | None = None, scope_id: str | None = None) -> list[Budget]:
        """Every budget, or those of one key, org or project; ordered by scope, id, then day/week/month."""
        if scope is None:
            rows = self._client.query(_SELECT + _ORDER).result_rows
        else:
            assert scope in SCOPES
            rows = self._client.query(_SELECT + _FILTER + _ORDER,
                                      parameters={"scope": scope, "scope_id": scope_id}).result_rows
        return [_budget(row) for row in rows]

    def get(self, key: BudgetKey) -> Budget | None:
        return next((b for b in self.list(key.scope, key.scope_id) if b.period == key.period), None)

    def put(self, budget: Budget, now: datetime | None = None) -> Budget:
        """Creates or replaces the budget with the same (scope, scope_id, period); returns it as stored."""
        now = _utc(now)
        stored = replace(budget, updated_at=now)
        self._write(stored, deleted=False, now=now)
        return stored

    def delete(self, scope: str, scope_id: str, period: str | None = None,
               now: datetime | None = None) -> list[Budget]:
        """Deletes one period's budget, or every budget of the scope when ``period`` is None; returns what was
        deleted (empty when there was nothing)."""
        now = _utc(now)
        gone = [b for b in self.list(scope, scope_id) if period is None or b.period == period]
        for budget in gone:
            self._write(budget, deleted=True, now=now)
        return gone

    def _write(self, budget: Budget, deleted: bool, now: datetime) -> None:
        last = self._client.query(_LAST_VERSION, parameters={
            "scope": budget.scope, "scope_id": budget.scope_id, "period": budget.period}).result_rows[0][0] or 0
        version = max(last + 1, int(now.timestamp() * 1_000_000))
        self._client.insert("budgets", [[budget.scope, budget.scope_id, budget.period, budget.amount_usd, budget.tz,
                                         list(budget.thresholds), now, int(deleted), version]],
                            column_names=COLUMNS)


def _budget(row: tuple) -> Budget:
    scope, scope_id, period, amount, tz, thresholds, updated_at = row
    return Budget(scope, scope_id, period, Decimal(amount), tz, tuple(thresholds), _utc(updated_at))


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(timezone.utc)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
