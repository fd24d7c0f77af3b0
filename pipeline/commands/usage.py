"""Usage commands: ``usage`` (summary, models, series), ``export`` (CSV) and ``token`` (an expiring
key-scoped API token).

They read ClickHouse directly. An embedded chDB folder opens in one process only: when a running worker holds
it, they ask that worker's HTTP API instead (``METERLINE_API_URL`` with ``METERLINE_API_ADMIN_TOKEN``, or
the admin token ``meterline demo`` keeps in the data folder). Dates may be given relative to today in the
chosen zone (``today``, ``yesterday``, ``tomorrow``, ``today-7``, ``today+1``) so that scripts and the
README's commands work on any day.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, BinaryIO

from clickhouse_connect.driver.exceptions import ClickHouseError

from pipeline.clickhouse import EmbeddedStoreBusy
from pipeline.commands.format import table, usd
from pipeline.commands.local import open_client, with_kept_credentials
from pipeline.config import Settings, load_settings, parse_duration
from pipeline.usage.api import PREFIX_V1, ROUTES, jsonable
from pipeline.usage.export import write_csv
from pipeline.usage.query import UsageQueries
from pipeline.usage.parameters import conforms, shown
from pipeline.usage.ranges import (GRANULARITIES, ID_EXPECT, ID_SCHEMA, QueryError, UsageRequest, parse_request,
                                   parse_zone)
from pipeline.usage.tokens import issue_key_token, verify

HTTP_TIMEOUT_S = 60
# ``today``, ``yesterday``, ``tomorrow``, or ``today`` plus or minus whole days (``today-7``, ``today+1``).
_RELATIVE_DAY = re.compile(r"^(today|yesterday|tomorrow)(?:([+-])(\d{1,5}))?$")
_NAMED_DAYS = {"yesterday": -1, "today": 0, "tomorrow": 1}
DEFAULT_FROM, DEFAULT_TO = "today-6", "tomorrow"  # the last 7 days, today included
ROUTE_PARAMETERS = {route.name: route.parameters for route in ROUTES}


class Unavailable(RuntimeError):
    """Neither the store nor a worker's HTTP API could answer."""


def register(subparsers: argparse._SubParsersAction) -> None:
    usage = subparsers.add_parser("usage", help="usage of a key (or org/project): summary, models, series")
    _range_arguments(usage)
    usage.add_argument("--json", action="store_true", help="print JSON instead of tables")
    usage.set_defaults(handler=run_usage)
    export = subparsers.add_parser("export", help="CSV of usage per bucket x key x model x provider")
    _range_arguments(export)
    export.add_argument("--out", default="-", help="file to write ('-' = stdout, the default)")
    export.set_defaults(handler=run_export)
    token = subparsers.add_parser("token", help="print an API token that reads one key's usage until it expires")
    token.add_argument("--key", required=True, help="api_key_id the token may read")
    token.add_argument("--ttl", default="90d",
                       help="how long the token is valid, e.g. 12h, 30d (default 90d); the expiry goes to stderr")
    token.set_defaults(handler=run_token)


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--key", help="api_key_id")
    scope.add_argument("--org", help="org_id")
    scope.add_argument("--project", help="project_id")
    scope.add_argument("--all", action="store_true", help="every key (the admin view)")
    parser.add_argument("--from", dest="start", default=DEFAULT_FROM,
                        help="YYYY-MM-DD (midnight in --tz), RFC 3339, or relative: today, yesterday, today-7 "
                             f"(default {DEFAULT_FROM}: the last 7 days)")
    parser.add_argument("--to", dest="end", default=DEFAULT_TO,
                        help=f"exclusive; same forms as --from (default {DEFAULT_TO}: up to now)")
    parser.add_argument("--tz", default="UTC", help="IANA time zone (default UTC); also what 'today' means. "
                                                    "The accepted zones: pipeline/usage/time_zones.txt")
    parser.add_argument("--granularity", choices=[*GRANULARITIES, "auto"], default="auto")


def _reporting_errors(handler):
    """Failures become one clear line on stderr and an exit code (2: bad input, 1: nothing could answer)."""
    @functools.wraps(handler)
    def reporting(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except QueryError as error:
            print(f"meterline: {error.error}: {error.detail}", file=sys.stderr)
            return 2
        except (Unavailable, ClickHouseError) as error:
            print(f"meterline: {error}", file=sys.stderr)
            return 1
        except OutputError as error:
            print(f"meterline: {error}", file=sys.stderr)
            return 2
    return reporting


class OutputError(RuntimeError):
    """The file a command should write cannot be written (missing folder, no permission, a directory)."""


def resolve_day(text: str, tz: str, today: date | None = None) -> str:
    """A relative day (``today``, ``yesterday``, ``tomorrow``, ``today-7``, ``today+1``) as ``YYYY-MM-DD`` in
    zone ``tz``; any other text unchanged (``parse_request`` validates it). ``today`` defaults to the current
    date in ``tz``; an unknown zone leaves the text for ``parse_request`` to report."""
    match = _RELATIVE_DAY.match(text.strip().lower())
    if not match:
        return text
    if today is None:
        try:
            today = datetime.now(parse_zone(tz)).date()  # only accepted zones: no file lookup of odd names
        except QueryError:
            return text
    days = _NAMED_DAYS[match.group(1)]
    if match.group(2):
        days += int(match.group(3)) * (1 if match.group(2) == "+" else -1)
    try:
        return (today + timedelta(days=days)).isoformat()
    except OverflowError:
        return text  # beyond year 9999: parse_request reports it as out of range


@_reporting_errors
def run_usage(args: argparse.Namespace) -> int:
    with _answering(args) as (source, request):
        body = {name: source.fetch(name, request) for name in ("summary", "models", "series")}
        print(json.dumps(body, indent=2) if args.json else render_usage(body))
    return 0


@_reporting_errors
def run_export(args: argparse.Namespace) -> int:
    if args.out != "-":
        _check_writable(Path(args.out))
    with _answering(args) as (source, request):
        if args.out == "-":
            rows = source.export(request, sys.stdout.buffer)
            where = "stdout"
        else:
            rows = _export_to_file(source, request, Path(args.out))
            where = args.out
    what = (f"{request.scope} {request.scope_id}" if request.scope_id else "all keys") + (
        f" from {request.start.isoformat()} to {request.end.isoformat()}")
    if rows:
        print(f"meterline: wrote {rows:,} row{'s' if rows != 1 else ''} to {where} ({what})", file=sys.stderr)
    else:
        print(f"meterline: wrote 0 rows to {where} (only the header): no usage for {what}. Check the key and "
              "the dates (`meterline usage` shows the same range)", file=sys.stderr)
    return 0


def _check_writable(path: Path) -> None:
    """Fails before any query when ``path`` cannot be created: a missing folder, a directory, no permission."""
    if path.is_dir():
        raise OutputError(f"--out {path}: is a directory; give a file name")
    folder = path.parent
    if not folder.exists():
        raise OutputError(f"--out {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"--out {path}: {folder} is not a folder")


def _export_to_file(source: Any, request: UsageRequest, path: Path) -> int:
    """Writes the CSV to ``path``; a failed export removes the partial file."""
    try:
        out = open(path, "wb")
    except OSError as error:
        raise OutputError(f"--out {path}: cannot write it ({error.strerror})") from None
    try:
        with out:
            return source.export(request, out)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def run_token(args: argparse.Namespace) -> int:
    """Prints a key token (signed with METERLINE_API_TOKEN_SECRET, or the secret ``meterline demo`` keeps in
    the data folder) on stdout and its expiry on stderr."""
    settings, notes = with_kept_credentials(load_settings())
    if not args.key.strip():
        print("meterline: --key must name an api_key_id", file=sys.stderr)
        return 2
    secret = settings.api.token_secret
    if not secret:
        print("meterline: no token secret: set METERLINE_API_TOKEN_SECRET (the one the API runs with), or run "
              f"in the data folder of `meterline demo` (it keeps one in {settings.data_dir}/token-secret)",
              file=sys.stderr)
        return 2
    if not conforms(ID_SCHEMA, args.key):
        print(f"meterline: bad 'id': {shown(args.key)}: the key must be {ID_EXPECT} (the API reads no other)",
              file=sys.stderr)
        return 2
    try:
        token = issue_key_token(secret, args.key, ttl_s=parse_duration(args.ttl, "--ttl"))
    except ValueError as error:  # ConfigError (a bad --ttl) is one too
        print(f"meterline: {error}", file=sys.stderr)
        return 2
    expires = verify([secret], token).expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    for note in notes:
        print(f"meterline: {note}", file=sys.stderr)
    print(token)
    print(f"meterline: token for key {args.key!r}, valid until {expires} (UTC)", file=sys.stderr)
    return 0


@contextmanager
def _answering(args: argparse.Namespace) -> Iterator[tuple[Any, UsageRequest]]:
    """The parsed request and the source to ask: the store itself, or the worker holding it."""
    scope, scope_id = next(((s, getattr(args, s)) for s in ("key", "org", "project") if getattr(args, s)),
                           ("all", None))
    start, end = resolve_day(args.start, args.tz), resolve_day(args.end, args.tz)
    request = parse_request(scope, scope_id, start, end, args.tz, args.granularity)
    with _open_source(load_settings()) as source:
        yield source, request


@contextmanager
def _open_source(settings: Settings) -> Iterator[Any]:
    try:
        client = open_client(settings.clickhouse.url)
    except EmbeddedStoreBusy:
        settings, _ = with_kept_credentials(settings)
        print(f"meterline: the embedded store is in use by another process (a running worker or `meterline demo`); "
              f"asking the running worker's HTTP API at {settings.api.url}", file=sys.stderr)
        yield WorkerApi(settings.api.url, settings.api.admin_token)
        return
    try:
        yield LocalStore(UsageQueries(client, settings.kafka.usage_topic, int(settings.rollup.max_lateness_s)))
    finally:
        client.close()


class LocalStore:
    def __init__(self, queries: UsageQueries) -> None:
        self._queries = queries

    def fetch(self, name: str, request: UsageRequest) -> dict:
        return jsonable(getattr(self._queries, name)(request))

    def unpriced(self, request: UsageRequest) -> dict:
        return jsonable(self._queries.unpriced(request))

    def export(self, request: UsageRequest, out: BinaryIO) -> int:
        """Writes the CSV to ``out``; returns the number of rows after the header."""
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        try:
            stats = write_csv(self._queries, request, text)
            text.flush()
        finally:
            text.detach()  # leave ``out`` open: it may be stdout
        return stats.rows


class WorkerApi:
    """The worker's HTTP API, read with the admin token (the store is held by that worker)."""

    def __init__(self, url: str, token: str) -> None:
        self._url, self._token = url.rstrip("/"), token

    def fetch(self, name: str, request: UsageRequest) -> dict:
        with self._get(name, request) as response:
            return json.load(response)

    def export(self, request: UsageRequest, out: BinaryIO) -> int:
        """Copies the worker's CSV to ``out`` unchanged; returns the number of rows after the header."""
        with self._get("export.csv", request) as response:
            rows = copy_csv(response, out)
        out.flush()
        return rows

    def unpriced(self, request: UsageRequest) -> dict:
        params = {"from": _rfc3339(request.start), "to": _rfc3339(request.end), "tz": request.tz}
        with self._open("unpriced", params) as response:
            return json.load(response)

    def _get(self, route: str, request: UsageRequest):
        params = {"scope": request.scope, **({"id": request.scope_id} if request.scope_id else {}),
                  "from": _rfc3339(request.start), "to": _rfc3339(request.end), "tz": request.tz}
        if "granularity" in ROUTE_PARAMETERS[route]:
            params["granularity"] = request.granularity
        return self._open(route, params)

    def _open(self, route: str, params: dict):
        if not self._token:
            raise Unavailable("the embedded store is held by another process; to ask its HTTP API set "
                              "METERLINE_API_ADMIN_TOKEN (the demo keeps its own in <data dir>/admin-token, "
                              "found when METERLINE_DATA_DIR is the demo's)")
        url = f"{self._url}{PREFIX_V1}/{route}?{urllib.parse.urlencode(params)}"
        get = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}"})
        try:
            return urllib.request.urlopen(get, timeout=HTTP_TIMEOUT_S)
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:500]
            raise Unavailable(f"the embedded store is held by another process; its HTTP API at {self._url} "
                              f"answered {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise Unavailable(f"the embedded store is held by another process, and its HTTP API at {self._url} "
                              f"did not answer ({error}); stop that process or start its worker") from None


def _rfc3339(instant) -> str:
    """An instant as the API's ``from``/``to`` take it (seconds always written, as RFC 3339 requires)."""
    return instant.isoformat(timespec="microseconds" if instant.microsecond else "seconds")


def copy_csv(source: BinaryIO, out: BinaryIO) -> int:
    """Copies CSV bytes from ``source`` to ``out`` unchanged; returns the records after the header (a quoted
    field may hold a line break, so records are counted by the csv module, not by lines)."""
    text = io.TextIOWrapper(source, encoding="utf-8", newline="")

    def lines() -> Iterator[str]:
        for line in text:
            out.write(line.encode("utf-8"))
            yield line

    return max(0, sum(1 for _ in csv.reader(lines())) - 1)


def render_usage(body: dict) -> str:
    """Tables for people, from the same JSON structures the API returns. Money is rounded as the usage page
    rounds it (``--json`` keeps the exact decimals); no column cuts a name."""
    summary, request = body["summary"], body["summary"]["request"]
    what = f"{request['scope']} {request['scope_id']}" if request["scope_id"] else "all keys"
    lines = [f"{what}: {request['start']} .. {request['end']} ({request['tz']})",
             freshness_line(summary["freshness"])]
    if not summary["status"]["has_usage"]:
        return "\n".join(lines + [summary["status"]["message"]])
    t = summary["totals"]
    lines += [
        f"  total tokens      {t['total_tokens']:>16,}", f"  input tokens      {t['input_tokens']:>16,}",
        f"  output tokens     {t['output_tokens']:>16,}", f"  requests          {t['requests']:>16,}"
        f"  (errors {t['error_requests']:,}, unpriced {t['unpriced_requests']:,})",
        f"  total cost        {usd(t['total_cost']):>16}"
        f"  (input {usd(t['input_cost'])}, output {usd(t['output_cost'])})",
        f"  avg tokens/req    {_decimal(t['avg_tokens_per_request']):>16}",
        f"  output/input      {t['output_input_ratio'] or '-':>16}",
        f"  cache read/write  {t['cache_read_tokens']:,} / {t['cache_write_tokens']:,}",
        f"  reasoning tokens  {t['reasoning_tokens']:,}",
        *([f"  other units       {', '.join(f'{name} {count:,}' for name, count in t['units'].items())}"]
          if t.get("units") else []), "",
    ]
    models = [[m["model"], m["provider"], f"{m['totals']['requests']:,}", _share(m["request_share"]),
               f"{m['totals']['input_tokens']:,}", f"{m['totals']['output_tokens']:,}", usd(m["totals"]["total_cost"])]
              for m in body["models"]["models"]]
    lines += table(("model", "provider", "requests", "share", "input", "output", "cost"), models,
                   right=(2, 3, 4, 5, 6))
    buckets = [[b["start"], f"{b['requests']:,}", f"{b['input_tokens']:,}", f"{b['output_tokens']:,}",
                usd(b["total_cost"])] for b in body["series"]["buckets"]]
    lines += [""] + table((f"{request['granularity']} starting", "requests", "input", "output", "cost"), buckets,
                          right=(1, 2, 3, 4))
    return "\n".join(lines)


def freshness_line(freshness: dict) -> str:
    """"counted through <instant> UTC; ..." from an answer's freshness (pipeline.usage.query.Freshness)."""
    days = freshness["lateness_bound_s"] / 86400
    late = f"{days:g} d" if days >= 1 else f"{freshness['lateness_bound_s'] / 3600:g} h"
    if freshness["counted_through"] is None:
        return f"  nothing counted yet; events may arrive up to {late} late"
    through = datetime.fromisoformat(freshness["counted_through"]).astimezone(UTC)
    return (f"  counted through {through:%Y-%m-%d %H:%M:%S} UTC (every event in Kafka before then); "
            f"events may still arrive up to {late} late")


def _decimal(text: str | None) -> str:
    """An exact decimal string with thousands separators ("3580.5" -> "3,580.5"); "-" for None."""
    return "-" if text is None else f"{Decimal(text):,}"


def _share(fraction: str) -> str:
    """A request share ("0.512345") as the page shows it: "51.2%" (half-even)."""
    return f"{(Decimal(fraction) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}%"
