"""One alert run (spikes: detect -> open/keep/resolve -> deliver -> save state; then budgets: status -> claim
-> deliver -> record, pipeline/alerts/budgets.py), and the loop around it.

``AlertRunner.run_once(now)`` is a coroutine: ClickHouse calls go through the ``ClickHouse`` wrapper's thread
(``await ch.run``), deliveries through aiohttp, so the worker can schedule it on its own event loop (a leader
timer) and ``meterline alerts run`` on a loop of its own. Only one runner may write alert_state at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import aiohttp
from prometheus_client import CollectorRegistry

from pipeline.alerts.budgets import BudgetAlerts, BudgetReport
from pipeline.alerts.channels import Channel, Outcome, Poster, RetryPolicy, channels_from_settings
from pipeline.alerts.detect import DetectionParams, Detector, drop_covered
from pipeline.alerts.lifecycle import advance, is_due, mark_delivered
from pipeline.alerts.metrics import AlertMetrics
from pipeline.alerts.model import METRICS, AlertKey
from pipeline.alerts.notice import LinkSettings, Notice, build_notice
from pipeline.alerts.rules import RuleSet
from pipeline.alerts.state import AlertRecord, AlertStateStore
from pipeline.budgets.status import BudgetMeter
from pipeline.clickhouse import ClickHouse
from pipeline.config import AlertSettings, BudgetSettings
from pipeline.metering.failpoints import Failpoints

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    findings: int = 0
    opened: list[AlertKey] = field(default_factory=list)
    resolved: list[AlertKey] = field(default_factory=list)
    open_alerts: int = 0
    delivered: Counter = field(default_factory=Counter)  # channel -> notices accepted
    failures: Counter = field(default_factory=Counter)  # channel -> failed requests
    seconds: float = 0.0
    budgets: BudgetReport = field(default_factory=BudgetReport)


class AlertRunner:
    def __init__(self, clickhouse: ClickHouse, settings: AlertSettings, rules: RuleSet, channels: list[Channel],
                 metrics: AlertMetrics, retry: RetryPolicy | None = None,
                 budget_settings: BudgetSettings | None = None, failpoints: Failpoints | None = None) -> None:
        self._settings = settings
        self._detector = Detector(clickhouse, DetectionParams.from_settings(settings), rules)
        self._store = AlertStateStore(clickhouse)
        self._channels = channels
        self._metrics = metrics
        self._retry = retry or RetryPolicy(settings.delivery_attempts, settings.delivery_timeout_s)
        self._links = LinkSettings.from_settings(settings)
        # A firing alert stays valid in Alertmanager this long without a re-send (4 missed runs).
        self._firing_validity_s = max(4 * settings.interval_s, 300.0)
        # All channels together get at most this long per run; what is left waits for the next run.
        self._delivery_budget_s = self._retry.timeout_s * self._retry.attempts + 10.0
        self._session: aiohttp.ClientSession | None = None
        self.budgets = BudgetAlerts(clickhouse, BudgetMeter(clickhouse.client, (budget_settings or BudgetSettings())
                                                            .trend_days), channels, metrics, self._links,
                                    settings.budget_claim_lease_s, failpoints)

    @classmethod
    def from_settings(cls, clickhouse: ClickHouse, settings: AlertSettings, registry: CollectorRegistry,
                      budget_settings: BudgetSettings | None = None,
                      failpoints: Failpoints | None = None) -> "AlertRunner":
        """Everything from settings: the rules file, the configured channels, metrics on ``registry``."""
        return cls(clickhouse, settings, RuleSet.load(settings.rules_file), channels_from_settings(settings),
                   AlertMetrics(registry), budget_settings=budget_settings, failpoints=failpoints)

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels)

    async def run_once(self, now: datetime | None = None) -> RunReport:
        """One pass at ``now`` (default: the current time): spikes, then budgets. Raises only if ClickHouse
        fails (after both parts had their chance): before delivery nothing is sent; if the final state write
        fails, the next run repeats the deliveries. Delivery failures are counted, never raised, and retried at
        the next run."""
        now = now or datetime.now(timezone.utc)
        started = time.monotonic()
        report = RunReport()
        problem: Exception | None = None
        try:
            await self._spikes(now, report)
        except Exception as error:
            problem = error
        try:
            report.budgets = await self.budgets.run(now, Poster(self._http(), self._retry))
        except Exception as error:
            problem = problem or error
        report.seconds = time.monotonic() - started
        self._metrics.run_seconds.observe(report.seconds)
        if problem is not None:
            self._metrics.run_failures.inc()
            raise problem
        return report

    async def _spikes(self, now: datetime, report: RunReport) -> None:
        loaded = await self._store.load_active([c.name for c in self._channels])
        findings = drop_covered(await self._detector.detect(now), {k for k, r in loaded.items() if r.firing})
        changed = advance(loaded, findings, now, self._settings.resolve_after_runs)
        current = {**loaded, **changed}
        report.findings = len(findings)
        report.opened = sorted(k for k, r in changed.items() if r.firing and not (k in loaded and loaded[k].firing))
        report.resolved = sorted(k for k, r in changed.items() if not r.firing)
        delivered = await self._deliver(current, now, report)
        # If this fails, the next run repeats this one's deliveries: at least once, never lost.
        await self._store.save(_next_versions({**changed, **delivered}, loaded, now))
        self._observe({**current, **delivered}, report)

    async def _deliver(self, current: dict[AlertKey, AlertRecord], now: datetime,
                       report: RunReport) -> dict[AlertKey, AlertRecord]:
        """Sends what each channel is owed; returns the records whose delivery marks changed."""
        if not self._channels:
            return {}
        deadline = time.monotonic() + self._delivery_budget_s
        poster = Poster(self._http(), self._retry)
        outcomes = await asyncio.gather(*(self._deliver_to(c, poster, self._due(c, current, now), deadline)
                                          for c in self._channels))
        marked: dict[AlertKey, AlertRecord] = {}
        for channel, outcome in zip(self._channels, outcomes):
            for notice in outcome.delivered:
                marked[notice.key] = mark_delivered(marked.get(notice.key, current[notice.key]), channel.name, now)
                self._metrics.alerts_sent.labels(channel=channel.name, status=notice.status).inc()
            report.delivered[channel.name] += len(outcome.delivered)
            if outcome.failures:
                report.failures[channel.name] += outcome.failures
                self._metrics.delivery_failures.labels(channel=channel.name).inc(outcome.failures)
        return marked

    def _due(self, channel: Channel, current: dict[AlertKey, AlertRecord], now: datetime) -> list[Notice]:
        renotify_s = self._settings.renotify_interval_s
        return [build_notice(record, self._links, now, self._firing_validity_s) for record in current.values()
                if is_due(record, channel.name, now, channel.every_run, renotify_s)]

    async def _deliver_to(self, channel: Channel, poster: Poster, notices: list[Notice],
                          deadline: float) -> Outcome:
        if not notices:
            return Outcome()
        try:
            return await channel.deliver(poster, notices, deadline)
        except Exception:  # a bug in one channel must not stop the others, nor detection
            log.exception("alert channel %s failed", channel.name)
            return Outcome(failures=1)

    def _observe(self, records: dict[AlertKey, AlertRecord], report: RunReport) -> None:
        open_by_metric = Counter(k.metric for k, r in records.items() if r.firing)
        for metric in METRICS:
            self._metrics.alerts_open.labels(metric=metric).set(open_by_metric[metric])
        report.open_alerts = sum(open_by_metric.values())

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def run_forever(self, interval_s: float, stop: asyncio.Event) -> None:
        """Runs every ``interval_s`` until ``stop`` is set; a failed run is logged and the loop goes on."""
        while not stop.is_set():
            try:
                report = await self.run_once()
                b = report.budgets
                eventful = report.opened or report.resolved or report.failures or b.sent or b.failures
                log.log(logging.INFO if eventful else logging.DEBUG,
                        "alert run: %d findings, %d open, opened %d, resolved %d, delivered %s, failures %s; "
                        "%d budgets %s, %d budget notifications sent, failures %s (%.2fs)",
                        report.findings, report.open_alerts, len(report.opened), len(report.resolved),
                        dict(report.delivered), dict(report.failures), b.budgets, dict(b.states), len(b.sent),
                        dict(b.failures), report.seconds)
            except Exception:
                log.exception("alert run failed; retrying in %ss", interval_s)
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _next_versions(records: dict[AlertKey, AlertRecord], loaded: dict[AlertKey, AlertRecord],
                   now: datetime) -> list[AlertRecord]:
    """Each saved record must outrank every stored row of its key, including a resolved row that was not
    loaded (nothing owed): version = max(loaded + 1, now in ms)."""
    now_ms = int(now.timestamp() * 1000)
    return [replace(r, version=max(loaded[k].version + 1 if k in loaded else 0, now_ms))
            for k, r in sorted(records.items())]
