"""``meterline collect``: the HTTP collector for gateways that cannot produce to Kafka themselves."""

from __future__ import annotations

import argparse

from pipeline.config import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    collect = subparsers.add_parser(
        "collect", help="run the HTTP collector (events and gateway log formats -> Kafka; see docs/ingest.md)")
    collect.set_defaults(handler=run_collect)


def run_collect(args: argparse.Namespace) -> int:
    # Imported here so that `meterline --help` and the other commands never pay for (or break on) aiohttp.
    from pipeline.ingest.server import run

    return run(load_settings())
