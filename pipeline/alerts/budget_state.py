"""The budget notification log in ClickHouse (``budget_notifications``, schemas/migrations/0004_budgets.sql):
who claimed which notification for which channel, and whether it was sent. It is what makes each budget
notification go out once across restarts and with several runners at the same time.

A unit of work is (notification, channel). A runner sends a unit only after it **claimed** it:

1. It inserts a ``claimed`` row for attempt n with ``insert_deduplication_token`` = a hash of (unit, n,
   "claimed"). ClickHouse checks the token and adds the part under one lock (MergeTree's deduplication log;
   Keeper for Replicated tables), so when two runners claim attempt n at once exactly one row is kept.
2. It reads the row back: only the runner whose owner id the row holds sends; the other counts a lost claim.
3. After delivery it appends ``sent`` (the channel accepted it) or ``released`` (it did not: attempt n + 1 may
   be claimed by anyone at the next run).

A claim is valid for ``lease_s`` from its time. Its owner sends only in the first half of that lease (the
delivery deadline), leaving the second half to record the outcome. A claim that is neither sent nor released
when its lease ends belongs to a runner that died; the next attempt may then be claimed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pipeline.alerts.budget_notice import NotificationKey, utc
from pipeline.budgets.status import BudgetStatus
from pipeline.clickhouse import ClickHouse

CLAIMED, SENT, RELEASED = "claimed", "sent", "released"
COLUMNS = ("scope", "scope_id", "period", "period_start", "kind", "threshold", "amount_usd", "channel", "attempt",
           "event", "owner", "at", "lease_until", "spent_usd", "projected_usd", "projected_exceed_at")
_LOAD = """
SELECT scope, scope_id, period, period_start, kind, threshold, amount_usd, channel, attempt, event, owner, at,
       lease_until
FROM budget_notifications
WHERE period_start >= {since:DateTime('UTC')}
ORDER BY attempt, event"""
_CLAIM_OWNER = """
SELECT owner FROM budget_notifications
WHERE period_start = {period_start:DateTime('UTC')} AND scope = {scope:String} AND scope_id = {scope_id:String}
  AND period = {period:String} AND kind = {kind:String} AND threshold = {threshold:UInt16}
  AND amount_usd = {amount_usd:Decimal(38, 24)} AND channel = {channel:String} AND attempt = {attempt:UInt32}
  AND event = 'claimed'"""

Unit = tuple[NotificationKey, str]  # (notification, channel)


@dataclass
class UnitState:
    """What the log says about one unit: its latest claim and whether any attempt was sent."""

    attempt: int = -1  # the latest attempt claimed; -1: never claimed
    owner: str = ""
    lease_until: datetime | None = None
    first_claimed_at: datetime | None = None
    released: bool = False  # the latest attempt was released
    sent: bool = False  # some attempt was sent

    def live(self, now: datetime) -> bool:
        """Claimed, not finished, and the claim's lease still runs: its owner may be sending it now."""
        return (self.attempt >= 0 and not self.sent and not self.released and self.lease_until is not None
                and self.lease_until > now)

    def done_or_busy(self, now: datetime) -> bool:
        return self.sent or self.live(now)


class NotificationLog:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    async def load(self, since: datetime) -> dict[Unit, UnitState]:
        """Every unit of periods starting at or after ``since`` (UTC)."""
        rows = await self._clickhouse.query_rows(_LOAD, {"since": utc(since).replace(tzinfo=None)})
        units: dict[Unit, UnitState] = {}
        for (scope, scope_id, period, period_start, kind, threshold, amount, channel, attempt, event, owner, at,
             lease_until) in rows:
            key = NotificationKey(scope, scope_id, period, utc(period_start), kind, threshold, Decimal(amount))
            state = units.setdefault((key, channel), UnitState())
            if event == CLAIMED:
                if state.first_claimed_at is None:
                    state.first_claimed_at = utc(at)
                if attempt > state.attempt:
                    state.attempt, state.owner, state.lease_until, state.released = \
                        attempt, owner, utc(lease_until), False
            elif event == SENT:
                state.sent = True
            elif event == RELEASED and attempt == state.attempt:
                state.released = True
        return units

    async def claim(self, unit: Unit, attempt: int, owner: str, now: datetime, lease_until: datetime,
                    status: BudgetStatus) -> bool:
        """Whether this runner (``owner``) now holds ``attempt`` of ``unit``: insert, then read back."""
        key, channel = unit
        row = _row(key, channel, attempt, CLAIMED, owner, now, lease_until, status)
        await self._clickhouse.run(self._clickhouse.client.insert, "budget_notifications", [row],
                                   column_names=COLUMNS,
                                   settings={"insert_deduplication_token": key.token(channel, attempt, CLAIMED)})
        winners = await self._clickhouse.query_rows(_CLAIM_OWNER, {
            "period_start": key.period_start.replace(tzinfo=None), "scope": key.scope, "scope_id": key.scope_id,
            "period": key.period, "kind": key.kind, "threshold": key.threshold, "amount_usd": key.amount_usd,
            "channel": channel, "attempt": attempt})
        return [owner] == [w for (w,) in winners]

    async def record(self, outcomes: list[tuple[Unit, int, str]], owner: str, now: datetime,
                     statuses: dict[NotificationKey, BudgetStatus]) -> None:
        """Appends one ``sent`` or ``released`` row per (unit, attempt, event), in one insert."""
        if not outcomes:
            return
        rows = [_row(key, channel, attempt, event, owner, now, now, statuses[key])
                for (key, channel), attempt, event in outcomes]
        tokens = "\n".join(key.token(channel, attempt, event) for (key, channel), attempt, event in outcomes)
        await self._clickhouse.run(self._clickhouse.client.insert, "budget_notifications", rows,
                                   column_names=COLUMNS, settings={
                                       "insert_deduplication_token": hashlib.sha256(tokens.encode()).hexdigest()})


def _row(key: NotificationKey, channel: str, attempt: int, event: str, owner: str, now: datetime,
         lease_until: datetime, status: BudgetStatus) -> list:
    return [key.scope, key.scope_id, key.period, key.period_start, key.kind, key.threshold, key.amount_usd, channel,
            attempt, event, owner, utc(now), utc(lease_until), status.spent_usd, status.projected_usd,
            utc(status.projected_exceed_at) if status.projected_exceed_at else None]

