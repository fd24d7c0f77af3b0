"""Usage commands: ``usage`` (summary, models, series), ``export`` (CSV) and ``token`` (an expiring
key-scoped API token).

They read ClickHouse directly. An embedded chDB folder opens in one process only: when a running worker holds
it, they ask that worker's HTTP API instead (``METERLINE_API_URL`` with ``METERLINE_API_ADMIN_TOKEN``).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from clickhouse_connect.driver.exceptions import ClickHouseError

from pipeline.usage.api import PREFIX_V1, ROUTES, jsonable
from pipeline.clickhouse import EmbeddedStoreBusy, connect
from pipeline.config import Settings, load_settings, parse_duration
from pipeline.usage.export import write_csv
from pipeline.usage.query import UsageQueries
from pipeline.usage.parameters import conforms, shown
from pipeline.usage.ranges import GRANULARITIES, ID_EXPECT, ID_SCHEMA, QueryError, UsageRequest, parse_request
from pipeline.usage.tokens import issue_key_token, verify

HTTP_TIMEOUT_S = 60
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
    parser.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD (midnight in --tz) or RFC 3339")
    parser.add_argument("--to", dest="end", required=True, help="exclusive; YYYY-MM-DD or RFC 3339")
    parser.add_argument("--tz", default="UTC", help="IANA time zone (default UTC; the accepted zones: "
                                                    "pipeline/usage/time_zones.txt)")
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
    return reporting


@_reporting_errors
def run_usage(args: argparse.Namespace) -> int:
    with _answering(args) as (source, request):
        body = {name: source.fetch(name, request) for name in ("summary", "models", "series")}
        print(json.dumps(body, indent=2) if args.json else render_usage(body))
    return 0


@_reporting_errors
def run_export(args: argparse.Namespace) -> int:
    with _answering(args) as (source, request):
        if args.out == "-":
            source.export(request, sys.stdout.buffer)
        else:
            with open(args.out, "wb") as out:
                source.export(request, out)
            print(f"wrote {args.out}", file=sys.stderr)
    return 0


def run_token(args: argparse.Namespace) -> int:
    """Prints a key token (signed with METERLINE_API_TOKEN_SECRET) on stdout and its expiry on stderr."""
    secret = load_settings().api.token_secret
    if not secret:
        print("meterline: set METERLINE_API_TOKEN_SECRET to issue key tokens", file=sys.stderr)
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
    print(token)
    print(f"meterline: token for key {args.key!r}, valid until {expires} (UTC)", file=sys.stderr)
    return 0


@contextmanager
def _answering(args: argparse.Namespace) -> Iterator[tuple[Any, UsageRequest]]:
    """The parsed request and the source to ask: the store itself, or the worker holding it."""
    scope, scope_id = next((s, getattr(args, s)) for s in ("key", "org", "project") if getattr(args, s))
    request = parse_request(scope, scope_id, args.start, args.end, args.tz, args.granularity)
    with _open_source(load_settings()) as source:
        yield source, request


@contextmanager
def _open_source(settings: Settings) -> Iterator[Any]:
    try:
        client = connect(settings.clickhouse.url)
    except EmbeddedStoreBusy as busy:
        print(f"meterline: {busy}; asking the running worker's HTTP API at {settings.api.url}", file=sys.stderr)
        yield WorkerApi(settings.api.url, settings.api.admin_token)
        return
    try:
        yield LocalStore(UsageQueries(client))
    finally:
        client.close()


class LocalStore:
    def __init__(self, queries: UsageQueries) -> None:
        self._queries = queries

    def fetch(self, name: str, request: UsageRequest) -> dict:
        return jsonable(getattr(self._queries, name)(request))

    def export(self, request: UsageRequest, out: BinaryIO) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        try:
            write_csv(self._queries, request, text)
            text.flush()
        finally:
            text.detach()  # leave ``out`` open: it may be stdout


class WorkerApi:
    """The worker's HTTP API, read with the admin token (the store is held by that worker)."""

    def __init__(self, url: str, token: str) -> None:
        self._url, self._token = url.rstrip("/"), token

    def fetch(self, name: str, request: UsageRequest) -> dict:
        with self._get(name, request) as response:
            return json.load(response)

    def export(self, request: UsageRequest, out: BinaryIO) -> None:
        with self._get("export.csv", request) as response:
            shutil.copyfileobj(response, out)
        out.flush()

    def _get(self, route: str, request: UsageRequest):
        if not self._token:
            raise Unavailable("the embedded store is held by another process, and METERLINE_API_ADMIN_TOKEN is not "
                              "set to ask its HTTP API")
        params = {"scope": request.scope, "id": request.scope_id, "from": _rfc3339(request.start),
                  "to": _rfc3339(request.end), "tz": request.tz}
        if "granularity" in ROUTE_PARAMETERS[route]:
            params["granularity"] = request.granularity
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


def render_usage(body: dict) -> str:
    """Tables for people, from the same JSON structures the API returns."""
    summary, request = body["summary"], body["summary"]["request"]
    lines = [f"{request['scope']} {request['scope_id']}: {request['start']} .. {request['end']} ({request['tz']})"]
    if not summary["status"]["has_usage"]:
        return "\n".join(lines + [summary["status"]["message"]])
    t = summary["totals"]
    lines += [
        f"  total tokens      {t['total_tokens']:>16,}", f"  input tokens      {t['input_tokens']:>16,}",
        f"  output tokens     {t['output_tokens']:>16,}", f"  requests          {t['requests']:>16,}"
        f"  (errors {t['error_requests']:,}, unpriced {t['unpriced_requests']:,})",
        f"  total cost USD    {t['total_cost']:>16}", f"  avg tokens/req    {t['avg_tokens_per_request']!s:>16}",
        f"  output/input      {t['output_input_ratio']!s:>16}",
        f"  cache read/write  {t['cache_read_tokens']:,} / {t['cache_write_tokens']:,}",
        f"  reasoning tokens  {t['reasoning_tokens']:,}", "",
        f"{'model':<28} {'provider':<12} {'requests':>10} {'share':>9} {'input':>14} {'output':>12} cost USD",
    ]
    for m in body["models"]["models"]:
        mt = m["totals"]
        lines.append(f"{m['model'][:28]:<28} {m['provider'][:12]:<12} {mt['requests']:>10,} "
                     f"{float(m['request_share']):>9.2%} {mt['input_tokens']:>14,} {mt['output_tokens']:>12,} "
                     f"{mt['total_cost']}")
    lines += ["", f"{request['granularity'] + ' starting':<26} {'requests':>10} {'input':>14} {'output':>12} cost USD"]
    for b in body["series"]["buckets"]:
        lines.append(f"{b['start']:<26} {b['requests']:>10,} {b['input_tokens']:>14,} {b['output_tokens']:>12,} "
                     f"{b['total_cost']}")
    return "\n".join(lines)
