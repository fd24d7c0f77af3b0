"""Alert commands: ``alerts run [--once] [--interval 60s]`` (the spike detector as its own process) and
``alerts list`` (open alerts from the alert state). See docs/alerts.md.

Both need the ClickHouse store itself. An embedded chDB folder opens in one process only: when a running
worker holds it, that worker runs the alerts itself, so these commands say so and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
import sys
from decimal import Decimal

from clickhouse_connect.driver.exceptions import ClickHouseError
from prometheus_client import CollectorRegistry, start_http_server

from pipeline.alerts.runner import AlertRunner, RunReport
from pipeline.alerts.state import AlertRecord, AlertStateStore
from pipeline.clickhouse import ClickHouse, EmbeddedStoreBusy
from pipeline.commands.format import table, usd
from pipeline.commands.local import open_store
from pipeline.config import Settings, load_settings, parse_duration
from pipeline.metering.failpoints import Failpoints

_UNKNOWN_TABLE = "code: 60"


def register(subparsers: argparse._SubParsersAction) -> None:
    alerts = subparsers.add_parser("alerts", help="spike and budget alerts: run the detectors, list open alerts")
    actions = alerts.add_subparsers(dest="alerts_action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="detect spikes, check budgets and deliver alerts, every --interval (or --once)")
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    run.add_argument("--interval", help="time between passes, e.g. 60s or 5m (default METERLINE_ALERTS_INTERVAL)")
    run.set_defaults(handler=run_alerts)
    listing = actions.add_parser("list", help="open alerts, from the alert state in ClickHouse")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=list_alerts)


def run_alerts(args: argparse.Namespace) -> int:
    settings = load_settings()
    interval_s = parse_duration(args.interval, "--interval") if args.interval else settings.alerts.interval_s
    if interval_s <= 0:
        print("meterline: --interval must be more than 0", file=sys.stderr)
        return 2
    registry = CollectorRegistry()

    async def work(clickhouse: ClickHouse) -> int:
        runner = AlertRunner.from_settings(clickhouse, settings.alerts, registry, settings.budgets,
                                           Failpoints(settings.failpoints))
        if not runner.channels:
            print("meterline: no alert channel is configured (METERLINE_ALERTS_*_URL / PAGERDUTY_ROUTING_KEY): "
                  "alerts are detected and recorded, not sent", file=sys.stderr)
        try:
            if args.once:
                print(render_report(await runner.run_once()))
            else:
                await runner.run_forever(interval_s, _stop_on_signals())
        finally:
            await runner.close()
        return 0

    if settings.alerts.metrics_port and not args.once:
        start_http_server(settings.alerts.metrics_port, registry=registry)
    return _with_store(settings, work, BUSY_RUN)


def list_alerts(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def work(clickhouse: ClickHouse) -> int:
        records = await AlertStateStore(clickhouse).list_open()
        print(json.dumps([_jsonable(r) for r in records], indent=2) if args.json else render_alerts(records))
        return 0

    return _with_store(settings, work, BUSY_LIST)


BUSY_RUN = ("the embedded ClickHouse store is in use by another process (a running worker). The worker runs the "
            "spike alerts itself, so nothing is needed here; to run alerts as a separate process, point "
            "METERLINE_CLICKHOUSE_URL at a ClickHouse server.")
BUSY_LIST = ("the embedded ClickHouse store is in use by another process (a running worker or demo), which logs "
             "each alert as it opens ('alert opened: ...'); stop it to list the open alerts here, or point "
             "METERLINE_CLICKHOUSE_URL at a ClickHouse server.")


def _with_store(settings: Settings, work, busy_message: str) -> int:
    """Opens the store, runs ``work`` on it, and turns the expected failures into one clear line."""
    try:
        clickhouse = open_store(settings.clickhouse.url)
    except EmbeddedStoreBusy:
        print(f"meterline: {busy_message}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(work(clickhouse))
    except ClickHouseError as error:
        if _UNKNOWN_TABLE in str(error).lower() or "unknown_table" in str(error).lower():
            print("meterline: the alert tables are missing: run `meterline migrate` first", file=sys.stderr)
        else:
            print(f"meterline: ClickHouse failed: {error}", file=sys.stderr)
        return 1
    finally:
        clickhouse.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def render_report(report: RunReport) -> str:
    lines = [f"alert run: {report.findings} series above threshold, {report.open_alerts} open alerts "
             f"({report.seconds:.2f}s)"]
    lines += [f"  opened   {k.api_key_id} model={k.model} metric={k.metric}" for k in report.opened]
    lines += [f"  resolved {k.api_key_id} model={k.model} metric={k.metric}" for k in report.resolved]
    for channel, count in sorted(report.delivered.items()):
        lines.append(f"  sent {count} to {channel}")
    for channel, count in sorted(report.failures.items()):
        lines.append(f"  {count} failed deliveries to {channel} (retried next run)")
    b = report.budgets
    if b.budgets:
        states = ", ".join(f"{count} {state.replace('_', ' ')}" for state, count in sorted(b.states.items()))
        lines.append(f"budgets: {b.budgets} ({states})")
    lines += [f"  budget {k.kind:<9} {k.scope} {k.scope_id} {k.period} "
              f"{str(k.threshold) + '% ' if k.kind == 'threshold' else ''}sent to {channel}" for k, channel in b.sent]
    if b.lost:
        lines.append(f"  {b.lost} budget notifications were claimed by another runner")
    for channel, count in sorted(b.failures.items()):
        lines.append(f"  {count} failed budget deliveries to {channel} (retried next run)")
    return "\n".join(lines)


def render_alerts(records: list[AlertRecord]) -> str:
    """One line per open alert; columns as wide as their values (no name is cut). Values are per hour."""
    if not records:
        return "no open alerts"
    rows = [[f"{r.opened_at:%Y-%m-%d %H:%M:%S}", r.key.api_key_id, r.key.model, r.key.metric, r.severity,
             metric_amount(r.key.metric, r.value), metric_amount(r.key.metric, r.baseline),
             metric_amount(r.key.metric, r.threshold), r.rule,
             ",".join(sorted(c for c, phase in r.delivered.items() if phase == "firing")) or "-"]
            for r in records]
    header = ("opened (UTC)", "api_key_id", "model", "metric", "severity", "value/h", "baseline/h", "threshold/h",
              "rule", "told")
    return "\n".join(table(header, rows, right=(5, 6, 7)))


def metric_amount(metric: str, value: float) -> str:
    """An alert's hourly value for people: USD as the usage page shows money, counts as whole numbers."""
    if not math.isfinite(value):
        return str(value)
    if metric == "cost":
        return usd(Decimal(repr(value)))
    return f"{value:,.0f}"


def _jsonable(record: AlertRecord) -> dict:
    return {"api_key_id": record.key.api_key_id, "model": record.key.model, "metric": record.key.metric,
            "severity": record.severity, "rule": record.rule, "reason": record.reason,
            "opened_at": record.opened_at.isoformat(), "value": record.value, "peak": record.peak,
            "threshold": record.threshold, "baseline": record.baseline, "delivered": record.delivered}
