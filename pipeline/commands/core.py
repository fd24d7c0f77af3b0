"""Core commands: ``migrate`` and ``worker``."""

from __future__ import annotations

import argparse
import sys

from pipeline.commands.local import open_client
from pipeline.config import load_settings
from pipeline.migrations import Migrator


def register(subparsers: argparse._SubParsersAction) -> None:
    migrate = subparsers.add_parser("migrate", help="apply pending ClickHouse migrations (idempotent)")
    migrate.set_defaults(handler=run_migrate)
    worker = subparsers.add_parser("worker", help="run the metering worker (Faust agents -> ClickHouse)")
    worker.set_defaults(handler=run_worker)


def run_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = open_client(settings.clickhouse.url, create_database=True)
    ran = Migrator(client).apply()
    for migration in ran:
        print(f"applied {migration.id}_{migration.name}")
    if not ran:
        print("nothing to apply: the schema is up to date")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from agents.app import run_worker as run
    from pipeline.metering.pricing import PricingError

    settings = load_settings()
    # The embedded store opens in one process: say so in one line (without chDB's own lock error) when a demo
    # or another worker holds it, before anything starts.
    open_client(settings.clickhouse.url, create_database=True).close()
    try:
        return run(settings)
    except PricingError as error:
        print(f"meterline: configuration error: {error}", file=sys.stderr)
        return 2
