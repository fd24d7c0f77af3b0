"""Price commands: ``prices unpriced`` (every model counted without a price, with its request count: what to
alias or price) and ``prices show`` (which price applies to a model id, and why: the resolution an operator
checks an alias or an override with).

``prices unpriced`` reads ClickHouse like ``meterline usage``: directly, or, when a running worker holds the
embedded store, through that worker's HTTP API (``/api/v1/unpriced``, admin token). ``prices show`` needs no
store: it loads the overrides file (``METERLINE_PRICE_OVERRIDES``) and the bundled genai-prices snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from pipeline.commands.format import table
from pipeline.commands.usage import DEFAULT_FROM, DEFAULT_TO, _open_source, _reporting_errors, resolve_day
from pipeline.config import load_settings
from pipeline.usage.api import EVERY_KEY
from pipeline.usage.ranges import parse_instant, parse_request, parse_zone


def register(subparsers: argparse._SubParsersAction) -> None:
    prices = subparsers.add_parser("prices", help="unpriced models; which price applies to a model")
    commands = prices.add_subparsers(dest="prices_command", metavar="COMMAND", required=True)
    unpriced = commands.add_parser("unpriced", help="every model counted without a price, with its request count")
    unpriced.add_argument("--from", dest="start", default=DEFAULT_FROM,
                          help=f"YYYY-MM-DD, RFC 3339 or relative (today-7); default {DEFAULT_FROM}")
    unpriced.add_argument("--to", dest="end", default=DEFAULT_TO, help=f"exclusive; default {DEFAULT_TO}")
    unpriced.add_argument("--tz", default="UTC", help="IANA time zone of the dates (default UTC)")
    unpriced.add_argument("--json", action="store_true", help="print JSON instead of a table")
    unpriced.set_defaults(handler=run_unpriced)
    show = commands.add_parser("show", help="the price a model id gets: its resolution, sheet and unit prices")
    show.add_argument("model", help="the model id as events carry it (e.g. my-gpt4o-deployment, openai/gpt-4o)")
    show.add_argument("--provider", default="", help="the events' provider field")
    show.add_argument("--tier", default="", help="the events' service_tier (batch, flex, priority, ...)")
    show.add_argument("--at", default="", help="RFC 3339 instant to price at (default now)")
    show.add_argument("--input-tokens", type=_token_count, default=0, help="input tokens, for tiered prices")
    show.set_defaults(handler=run_show)


@_reporting_errors
def run_unpriced(args: argparse.Namespace) -> int:
    request = parse_request("key", EVERY_KEY, resolve_day(args.start, args.tz), resolve_day(args.end, args.tz),
                            args.tz)
    with _open_source(load_settings()) as source:
        answer = source.unpriced(request)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    models = answer["models"]
    if not models:
        print(f"every model was priced from {answer['start']} to {answer['end']}")
        return 0
    rows = [[m["model"], m["provider"] or "-", f"{m['requests']:,}", f"{m['keys']:,}", m["first_window"],
             m["last_window"]] for m in models]
    print("\n".join(table(("model", "provider", "unpriced requests", "keys", "first seen", "last seen"), rows,
                          right=(2, 3))))
    if answer["truncated"]:
        print(f"(the first {answer['limit']} models only)")
    print("\nalias a model to a priced one, or price it, in METERLINE_PRICE_OVERRIDES: see docs/pricing.md",
          file=sys.stderr)
    return 0


def _token_count(text: str) -> int:
    """A whole number of tokens, 0 or more (argparse reports anything else as bad input, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of tokens, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


@_reporting_errors
def run_show(args: argparse.Namespace) -> int:
    """Prints how a model id resolves and the unit prices that apply (USD per genai-prices price unit).
    Exit 0 priced, 1 unpriced, 2 bad input (an unreadable ``--at``, an invalid overrides file)."""
    from pipeline.metering.pricing import PriceBook, PricingError

    settings = load_settings()
    try:
        book = PriceBook.from_file(settings.rollup.price_overrides)
    except PricingError as error:
        print(f"meterline: {error}", file=sys.stderr)
        return 2
    at = datetime.now(UTC) if not args.at else parse_instant(args.at, parse_zone("UTC"), "--at")
    provider = args.provider or None
    rate = book.rate_for(args.model, provider, int(at.timestamp() * 1000), args.input_tokens, args.tier)
    resolved = book.resolve(args.model, provider)
    print(f"model {args.model!r}, provider {args.provider or '-'!r}, tier {args.tier or '-'!r}, at "
          f"{at.isoformat()}")
    if resolved is not None:
        print(f"  resolves to genai-prices {resolved.provider.id}/{resolved.model.id}")
    if rate is None:
        print("  unpriced: counted without a cost (add an alias or a [[price]] to the overrides file)")
        return 1
    from pipeline.units import BY_NAME

    print(f"  price sheet {rate.version}")
    rows = [[BY_NAME[name].price_key, str(price)] for name, price in rate.prices]
    print("\n".join("  " + line for line in table(("price key", "USD"), rows, right=(1,))))
    return 0
