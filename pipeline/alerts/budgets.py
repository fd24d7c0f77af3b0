"""Budget alerts: the second detector of the alert runner (after spikes). Each run computes every budget's
status (pipeline/budgets/status.py), decides which notifications each channel is owed, claims them in the
notification log (budget_state.py), sends what it claimed through the spike alerts' channels (with their
retries) and records the outcome.

What is owed, per budget and channel, in the budget's current period and for its current amount:

* **threshold**: the highest threshold crossed (spent >= amount x threshold / 100), unless the channel was
  already sent (or is being sent, a live claim) that threshold or a higher one. Several thresholds crossed
  between two runs give one notification, for the highest; each threshold is notified at most once.
* **forecast**: once, when the projection first says the budget will be exceeded before the period ends
  (spent still below the amount).

The period's start and the amount are part of a notification's identity: a new period starts clean, and a
changed amount is notified against afresh (a changed threshold list applies at the next run too).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clickhouse_connect.driver.exceptions import ClickHouseError

from pipeline.alerts.budget_notice import FORECAST, THRESHOLD, BudgetNotice, NotificationKey, build_budget_notice
from pipeline.alerts.budget_state import RELEASED, SENT, NotificationLog, Unit, UnitState
from pipeline.alerts.channels import Channel, Outcome, Poster
from pipeline.alerts.metrics import AlertMetrics
from pipeline.alerts.notice import LinkSettings
from pipeline.budgets.model import Budget
from pipeline.budgets.status import STATES, BudgetMeter, BudgetStatus, PROJECTED_OVER
from pipeline.budgets.store import BudgetStore
from pipeline.clickhouse import ClickHouse
from pipeline.metering.failpoints import Failpoints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueUnit:
    """A unit this runner should try to claim, at ``attempt``."""

    key: NotificationKey
    channel: str
    attempt: int


@dataclass
class BudgetReport:
    budgets: int = 0
    states: Counter = field(default_factory=Counter)  # state -> budgets
    claimed: int = 0
    lost: int = 0  # claims another runner won
    sent: list[tuple[NotificationKey, str]] = field(default_factory=list)  # (notification, channel)
    failures: Counter = field(default_factory=Counter)  # channel -> failed requests
    evaluation_failures: int = 0


def due_units(statuses: list[BudgetStatus], channels: list[str], units: dict[Unit, UnitState],
              now: datetime) -> list[DueUnit]:
    """What each channel is owed now and may be claimed (pure; see the module docstring)."""
    due = []
    for status in statuses:
        wanted = []
        if status.thresholds_crossed:
            wanted.append(NotificationKey.of(status, THRESHOLD, max(status.thresholds_crossed)))
        if status.state == PROJECTED_OVER:
            wanted.append(NotificationKey.of(status, FORECAST))
        for key in wanted:
            for channel in channels:
                if _covered(key, channel, units, now):
                    continue
                state = units.get((key, channel))
                due.append(DueUnit(key, channel, state.attempt + 1 if state else 0))
    return due


def _covered(key: NotificationKey, channel: str, units: dict[Unit, UnitState], now: datetime) -> bool:
    """Sent or being sent to ``channel``: this notification, or for a threshold, a higher threshold of the
    same budget, period and amount."""
    for (other, other_channel), state in units.items():
        if other_channel != channel or other.kind != key.kind or not other.same_budget_period(key):
            continue
        if (other.threshold == key.threshold or (key.kind == THRESHOLD and other.threshold > key.threshold)) \
                and state.done_or_busy(now):
            return True
    return False


class BudgetAlerts:
    """One budget pass per alert run. ``owner``: this runner's id in the notification log (one per process)."""

    def __init__(self, clickhouse: ClickHouse, meter: BudgetMeter, channels: list[Channel], metrics: AlertMetrics,
                 links: LinkSettings, lease_s: float, failpoints: Failpoints | None = None,
                 owner: str | None = None) -> None:
        self._clickhouse = clickhouse
        self._store = BudgetStore(clickhouse.client)
        self._meter = meter
        self._log = NotificationLog(clickhouse)
        self._channels = channels
        self._metrics = metrics
        self._links = links
        self._lease = timedelta(seconds=lease_s)
        self._failpoints = failpoints or Failpoints()
        self.owner = owner or uuid.uuid4().hex

    async def run(self, now: datetime, poster: Poster) -> BudgetReport:
        """Raises only if ClickHouse fails (nothing is then sent that was not claimed; a claim left behind is
        taken over after its lease). Delivery failures are counted and released for the next run.

        Statuses are computed as of ``now``; claims and their leases are dated ``now`` + the real time elapsed
        since, so a long evaluation (many budgets) cannot leave a runner sending on a lease that has run out."""
        started = time.monotonic()
        clock = _RunClock(now, started)
        report = BudgetReport()
        budgets = await self._clickhouse.run(self._store.list)
        statuses = await self._clickhouse.run(self._evaluate, budgets, now, report)
        report.budgets = len(statuses)
        report.states = Counter(s.state for s in statuses)
        for state in STATES:
            self._metrics.budgets.labels(state=state).set(report.states[state])
        if not statuses or not self._channels:
            return report
        units = await self._log.load(min(s.period_start for s in statuses))
        by_key = {NotificationKey.of(s, kind, threshold): s for s in statuses
                  for kind, threshold in [(FORECAST, 0)] + [(THRESHOLD, t) for t in s.budget.thresholds]}
        claimed, first_claim = await self._claim(due_units(statuses, [c.name for c in self._channels], units, now),
                                                 by_key, clock, report)
        if claimed:
            self._failpoints.hit("budget_after_claim")
            # The owner sends only in the first half of its lease; the second half is left to record the outcome.
            deadline = first_claim + self._lease.total_seconds() / 2
            await self._deliver(claimed, by_key, units, clock, deadline, poster, report)
        return report

    def _evaluate(self, budgets: list[Budget], now: datetime, report: BudgetReport) -> list[BudgetStatus]:
        statuses = []
        for budget in budgets:
            try:
                statuses.append(self._meter.status(budget, now))
            except ClickHouseError:
                raise  # the store is down: the whole pass fails and the next run retries
            except Exception:  # one bad budget (e.g. a zone the system no longer knows) must not stop the rest
                log.exception("budget %s %s (%s) could not be evaluated", budget.scope, budget.scope_id,
                              budget.period)
                report.evaluation_failures += 1
                self._metrics.budget_evaluation_failures.inc()
        return statuses

    async def _claim(self, due: list[DueUnit], by_key: dict[NotificationKey, BudgetStatus], clock: "_RunClock",
                     report: BudgetReport) -> tuple[list[DueUnit], float]:
        """The units this runner now holds, and when (monotonic) it claimed the first of them."""
        claimed, first = [], None
        for unit in due:
            # dated as of the evaluation (the notification's startsAt); the lease runs from the claim itself
            at = clock.now()
            if await self._log.claim((unit.key, unit.channel), unit.attempt, self.owner, clock.started_at,
                                     at + self._lease, by_key[unit.key]):
                first = clock.monotonic_of(at) if first is None else first
                claimed.append(unit)
                report.claimed += 1
            else:
                report.lost += 1
                self._metrics.budget_claims_lost.inc()
        return claimed, first if first is not None else time.monotonic()

    async def _deliver(self, claimed: list[DueUnit], by_key: dict[NotificationKey, BudgetStatus],
                       units: dict[Unit, UnitState], clock: "_RunClock", deadline: float, poster: Poster,
                       report: BudgetReport) -> None:
        now = clock.started_at
        per_channel: dict[str, list[BudgetNotice]] = defaultdict(list)
        for unit in claimed:
            state = units.get((unit.key, unit.channel))
            starts_at = state.first_claimed_at if state and state.first_claimed_at else now
            per_channel[unit.channel].append(build_budget_notice(unit.key, by_key[unit.key], self._links, starts_at))
        channels = [c for c in self._channels if c.name in per_channel]
        outcomes = await asyncio.gather(*(self._send(c, poster, per_channel[c.name], deadline) for c in channels))
        attempts = {(u.key, u.channel): u.attempt for u in claimed}
        results = []
        for channel, outcome in zip(channels, outcomes):
            delivered = {notice.key for notice in outcome.delivered}
            for notice in per_channel[channel.name]:
                unit = (notice.key, channel.name)
                results.append((unit, attempts[unit], SENT if notice.key in delivered else RELEASED))
            for key in delivered:
                report.sent.append((key, channel.name))
                self._metrics.budget_notifications_sent.labels(channel=channel.name, kind=key.kind).inc()
            if outcome.failures:
                report.failures[channel.name] += outcome.failures
                self._metrics.delivery_failures.labels(channel=channel.name).inc(outcome.failures)
        if report.sent:
            self._failpoints.hit("budget_after_send")
        await self._log.record(results, self.owner, clock.now(), by_key)

    async def _send(self, channel: Channel, poster: Poster, notices: list[BudgetNotice], deadline: float) -> Outcome:
        try:
            return await channel.deliver(poster, notices, deadline)
        except Exception:  # a bug in one channel must not stop the others
            log.exception("budget notification channel %s failed", channel.name)
            return Outcome(failures=1)


class _RunClock:
    """A run's time: the instant it was asked to run at, moved on by the real time elapsed since it started."""

    def __init__(self, now: datetime, started: float) -> None:
        self._now, self._started = now, started

    @property
    def started_at(self) -> datetime:
        return self._now

    def now(self) -> datetime:
        return self._now + timedelta(seconds=time.monotonic() - self._started)

    def monotonic_of(self, moment: datetime) -> float:
        return self._started + (moment - self._now).total_seconds()
