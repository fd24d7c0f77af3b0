"""The ``meterline`` command line. Each area's commands live in a module of ``pipeline/commands/`` that
registers them through a ``register(subparsers)`` function, so this file stays a table of contents."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline.config import ConfigError
from pipeline.metrics import disable_created_series

# Modules that contribute subcommands, in the order `meterline --help` lists them.
COMMAND_MODULES = (
    "pipeline.commands.core",
    "pipeline.commands.demo",
    "pipeline.commands.produce",
    "pipeline.commands.alerts",
    "pipeline.commands.api",
    "pipeline.commands.collect",
    "pipeline.commands.usage",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterline", description="Exact per-API-key usage metering for LLM APIs (Kafka -> Faust -> ClickHouse).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Every process (worker, collector, alert runner, API) starts here: one place for the metrics switch.
    disable_created_series()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args) or 0
    except ConfigError as error:
        print(f"meterline: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
