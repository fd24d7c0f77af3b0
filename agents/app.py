"""Building and running the Faust worker from :class:`~pipeline.config.Settings`."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from dataclasses import dataclass
from typing import Callable

import faust
from aiohttp import web
from prometheus_client import CollectorRegistry

from agents.buffers import PartitionBuffers
from agents.metering import MeteringAgent
from agents.web import WebServer, base_app
from pipeline.alerts.runner import AlertRunner
from pipeline.alerts.state import AlertRecord, AlertStateStore
from pipeline.budgets.api import BudgetService, add_budget_routes
from pipeline.usage.api import add_api_routes, add_usage_page
from pipeline.kafka import create_topics
from pipeline.clickhouse import ClickHouse
from pipeline.config import Settings
from pipeline.contract import ContractDecoder
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.deadletters import DeadLetterProducer
from pipeline.metering.meter import Meter
from pipeline.metrics import PipelineMetrics
from pipeline.migrations import Migrator
from pipeline.retry import Backoff
from pipeline.metering.pricing import PriceBook
from pipeline.usage.query import UsageQueries
from pipeline.metering.rollup import RollupBuilder
from pipeline.metering.sink import RollupWriter

log = logging.getLogger(__name__)


@dataclass
class Worker:
    """What callers extend before the worker starts (the quick start adds tasks and reads metrics)."""

    app: faust.App
    metrics: PipelineMetrics


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.kafka.group_id,
        broker=[f"kafka://{address.strip()}" for address in settings.kafka.brokers.split(",")],
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
        web_enabled=True,  # serves only the WebServer registered below, not Faust's legacy web stack
        store="memory://",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Revocation must not wait for buffered messages: they are re-read after the rebalance anyway.
        stream_wait_empty=False,
        producer_acks=-1,
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_s / 3),
        broker_rebalance_timeout=max(settings.kafka.session_timeout_s, 10.0),
    )


def build_worker(settings: Settings, clickhouse: ClickHouse, reader: ClickHouse) -> Worker:
    """The worker: the metering agent writing through ``clickhouse``, and the HTTP API reading through
    ``reader`` (its own handle and thread: on the embedded default this process is the only one that can
    open the data folder, and a slow export must never delay a flush)."""
    app = create_app(settings)
    metrics = PipelineMetrics(CollectorRegistry())
    failpoints = Failpoints(settings.failpoints)
    writer = RollupWriter(clickhouse.client, settings.kafka.usage_topic, settings.rollup.max_lateness_s, failpoints)
    usage_topic = app.topic(settings.kafka.usage_topic, key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw", partitions=settings.kafka.partitions)
    # Flush early when this much is buffered; stop reading (backpressure) at twice as much.
    flush_at = settings.rollup.flush_max_bytes
    buffers = PartitionBuffers(flush_at, 2 * flush_at)
    builder = RollupBuilder(ContractDecoder(settings.contract.max_batch_events),
                            PriceBook.from_file(settings.rollup.price_overrides))
    backoff = Backoff(settings.clickhouse.retry_initial_s, settings.clickhouse.retry_max_s)
    meter = Meter(clickhouse, writer, builder, settings.rollup, metrics, backoff)

    def send(topic: str, value: bytes, headers: list[tuple[str, bytes]]):
        return app.producer.send(topic, None, value, None, None, headers)

    dead_letters = DeadLetterProducer(send, settings.kafka.dlq_topic, settings.kafka.usage_topic, metrics,
                                      failpoints, backoff)
    agent = MeteringAgent(app, usage_topic, meter, dead_letters, buffers, metrics, failpoints,
                          settings.rollup.flush_interval_s)
    agent.install()
    web = base_app(metrics, lambda: agent.positioned)
    web.router.add_get("/progress", _progress_handler(agent, meter))
    queries = UsageQueries(reader.client, settings.kafka.usage_topic, int(settings.rollup.max_lateness_s))
    add_api_routes(web, queries, reader.run, settings.api, trend_days=settings.budgets.trend_days)
    add_budget_routes(web, BudgetService.over(reader.client, settings.budgets.trend_days), reader.run, settings.api)
    add_usage_page(web)
    app.web_server(WebServer(web, settings.web.host, settings.web.port))
    if settings.alerts.in_worker:
        _schedule_alerts(app, settings, reader, metrics, failpoints)
    return Worker(app, metrics)


def _schedule_alerts(app: faust.App, settings: Settings, reader: ClickHouse, metrics: PipelineMetrics,
                     failpoints: Failpoints) -> None:
    """The spike and budget alerts on a leader timer: one runner per consumer group, reading through ``reader``."""
    runner = AlertRunner.from_settings(reader, settings.alerts, metrics.registry, settings.budgets, failpoints)

    @app.timer(settings.alerts.interval_s, on_leader=True)
    async def detect_spikes() -> None:
        try:
            report = await runner.run_once()
        except Exception:  # a failed run is retried at the next tick; it must never stop metering
            log.exception("alert run failed")
            return
        records = {}
        if report.opened:
            try:
                records = {record.key: record for record in await AlertStateStore(reader).list_open()}
            except Exception as error:  # the alert is recorded and delivered; only this log line lacks numbers
                log.warning("alert details unavailable: %s", error)
        for key in report.opened:
            log.warning("alert opened: %s model=%s metric=%s%s", key.api_key_id, key.model, key.metric,
                        _alert_numbers(records.get(key)))
        for key in report.resolved:
            log.info("alert resolved: %s model=%s metric=%s", key.api_key_id, key.model, key.metric)
        for key, channel in report.budgets.sent:
            log.warning("budget notification sent to %s: %s %s %s %s %s", channel, key.scope, key.scope_id,
                        key.period, key.kind, key.threshold)

    @app.on_before_shutdown.connect
    async def close_alerts(sender, **kwargs) -> None:
        await runner.close()


def _alert_numbers(record: AlertRecord | None) -> str:
    """ ": 12,345/h (baseline 80/h, threshold 400/h, rule baseline)" for an alert's log line; '' without it."""
    if record is None:
        return ""

    def amount(value: float) -> str:
        return f"${value:,.2f}" if record.key.metric == "cost" else f"{value:,.0f}"

    return (f": {amount(record.value)}/h (baseline {amount(record.baseline)}/h, threshold "
            f"{amount(record.threshold)}/h, rule {record.rule})")


def _progress_handler(agent: MeteringAgent, meter: Meter):
    async def handler(request: web.Request) -> web.Response:
        """Last offset committed to ClickHouse per assigned partition: how far the worker has counted."""
        return web.json_response({"positioned": agent.positioned,
                                  "partitions": {str(p): o for p, o in sorted(meter.committed().items())}})

    return handler


def _tune_garbage_collector() -> None:
    """A flush creates a few objects per event and keeps them briefly; with the default thresholds the
    collector re-scans every long-lived object of Faust and the price book many times per flush (~30% of
    the hot path in measurements). Freeze what start-up created and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def prepare(settings: Settings, clickhouse: ClickHouse) -> None:
    """Schema and topics, before the worker joins its group. Both steps are idempotent."""
    ran = Migrator(clickhouse.client).apply()
    if ran:
        log.info("applied migrations: %s", ", ".join(f"{m.id}_{m.name}" for m in ran))
    k = settings.kafka
    asyncio.run(create_topics(k.brokers, {k.usage_topic: k.partitions, k.dlq_topic: k.partitions},
                              replication=k.replication_factor))


def run_worker(settings: Settings, extend: Callable[[Worker], None] | None = None, quiet: bool = False) -> int:
    """Runs the worker until SIGINT/SIGTERM. ``extend`` may add tasks to it first (the quick start does);
    ``quiet`` leaves out Faust's banner (the quick start prints its own status).

    Logging stays as the caller configured it (the CLI: one format for every logger), instead of Faust's
    own colored format; Faust's progress spinner writes terminal control codes, so it runs only when
    stdout is a terminal and the output is not quiet."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clickhouse = ClickHouse.open(settings.clickhouse.url, create_database=True)
    reader = ClickHouse.open(settings.clickhouse.url)
    try:
        prepare(settings, clickhouse)
        worker = build_worker(settings, clickhouse, reader)
        if extend is not None:
            extend(worker)
        _tune_garbage_collector()
        runner = faust.Worker(worker.app, redirect_stdouts=False, quiet=quiet, override_logging=False)
        if quiet or not sys.stdout.isatty():
            runner.spinner = None
        runner.execute_from_commandline()
    finally:
        reader.close()
        clickhouse.close()
    return 0
