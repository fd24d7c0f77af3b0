"""The ``meterline`` command line. Each area's commands live in a module of ``pipeline/commands/`` that
registers them through a ``register(subparsers)`` function, so this file stays a table of contents."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from pipeline.clickhouse import EmbeddedStoreBusy
from pipeline.config import ConfigError
from pipeline.metrics import disable_created_series

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Modules that contribute subcommands, in the order `meterline --help` lists them.
COMMAND_MODULES = (
    "pipeline.commands.core",
    "pipeline.commands.demo",
    "pipeline.commands.produce",
    "pipeline.commands.alerts",
    "pipeline.commands.budget",
    "pipeline.commands.api",
    "pipeline.commands.collect",
    "pipeline.commands.usage",
    "pipeline.commands.prices",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterline", description="Exact per-API-key usage metering for LLM APIs (Kafka -> Faust -> ClickHouse).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    parser.add_argument("--version", action="version", version=f"meterline {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def package_version() -> str:
    """The installed meterline distribution's version (pyproject.toml), or "unknown" when not installed."""
    try:
        return version("meterline")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Runs one command. Exit codes: 0 done, 1 something it needs failed (store, broker, a file system
    error), 2 bad input or configuration, 130 interrupted. Expected failures are one ``meterline: ...`` line
    on stderr, never a traceback (``-v`` shows the traceback of an unexpected file system error)."""
    args = build_parser().parse_args(argv)
    # Every process (worker, collector, alert runner, API) starts here: one place for the metrics switch.
    disable_created_series()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    try:
        return args.handler(args) or 0
    except ConfigError as error:
        print(f"meterline: configuration error: {error}", file=sys.stderr)
        return 2
    except EmbeddedStoreBusy as error:
        print(f"meterline: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a file or socket the command needs: say which, without a traceback
        logging.getLogger("meterline").debug("command failed", exc_info=True)
        print(f"meterline: {_describe(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _describe(error: OSError) -> str:
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
