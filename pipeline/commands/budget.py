"""``meterline budget set|list|delete``: budgets per key, org or project (docs/alerts.md, "Budgets").

They use the ClickHouse store directly. An embedded chDB folder opens in one process only: when a running
worker holds it, they ask that worker's HTTP API instead, with the admin token (``METERLINE_API_URL``,
``METERLINE_API_ADMIN_TOKEN``), as ``meterline usage`` does. Input is checked here first either way.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from pipeline.usage.api import PREFIX_V1, jsonable
from pipeline.budgets.api import BudgetService
from pipeline.budgets.export import status_csv
from pipeline.budgets.model import DEFAULT_PERIOD, PERIODS, Budget, check_scope, make_budget
from pipeline.clickhouse import EmbeddedStoreBusy, connect
from pipeline.config import Settings, load_settings
from pipeline.usage.ranges import QueryError

HTTP_TIMEOUT_S = 60
_UNKNOWN_TABLE = ("code: 60", "unknown_table")


class Unavailable(RuntimeError):
    """Neither the store nor a worker's HTTP API could answer (or there was nothing to act on)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    budget = subparsers.add_parser("budget", help="budgets per key, org or project: set, list with status, delete")
    actions = budget.add_subparsers(dest="budget_action", metavar="ACTION", required=True)
    put = actions.add_parser("set", help="create or replace a budget")
    _scope_arguments(put, required=True)
    put.add_argument("--amount", required=True, help="USD per period, a decimal such as 100 or 12.50")
    put.add_argument("--period", choices=PERIODS, default=DEFAULT_PERIOD, help="default month; weeks start Monday")
    put.add_argument("--tz", default="UTC", help="IANA time zone of the period (default UTC)")
    put.add_argument("--thresholds", default="50,80,100", help="notify at these percents (default 50,80,100)")
    put.set_defaults(handler=run_set)
    listing = actions.add_parser("list", help="budgets with spent, projected and limit (all without a scope)")
    _scope_arguments(listing, required=False)
    listing.add_argument("--period", choices=PERIODS, help="only this period's budget")
    output = listing.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the API's JSON")
    output.add_argument("--csv", action="store_true", help="print the budget status CSV")
    listing.set_defaults(handler=run_list)
    delete = actions.add_parser("delete", help="delete a budget (one period, or all of the scope's)")
    _scope_arguments(delete, required=True)
    delete.add_argument("--period", choices=PERIODS, help="only this period's budget (default: all)")
    delete.set_defaults(handler=run_delete)


def _scope_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    scope = parser.add_mutually_exclusive_group(required=required)
    scope.add_argument("--key", help="api_key_id")
    scope.add_argument("--org", help="org_id")
    scope.add_argument("--project", help="project_id")


def _scope(args: argparse.Namespace) -> tuple[str, str] | tuple[None, None]:
    for scope in ("key", "org", "project"):
        if getattr(args, scope) is not None:
            check_scope(scope, getattr(args, scope))
            return scope, getattr(args, scope)
    return None, None


def _reporting_errors(handler):
    """Failures become one clear line on stderr and an exit code (2: bad input, 1: nothing could answer)."""
    @functools.wraps(handler)
    def reporting(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except QueryError as error:
            print(f"meterline: {error.error}: {error.detail}", file=sys.stderr)
            return 2
        except Unavailable as error:
            print(f"meterline: {error}", file=sys.stderr)
            return 1
        except ClickHouseError as error:
            if any(marker in str(error).lower() for marker in _UNKNOWN_TABLE):
                print("meterline: the budget tables are missing: run `meterline migrate` first", file=sys.stderr)
            else:
                print(f"meterline: ClickHouse failed: {error}", file=sys.stderr)
            return 1
    return reporting


@_reporting_errors
def run_set(args: argparse.Namespace) -> int:
    scope, scope_id = _scope(args)
    budget = make_budget(scope, scope_id, args.period, args.amount, args.tz, args.thresholds)
    with _open_source(load_settings()) as source:
        status = source.put(budget)
    print(f"set: {render_status(status)}")
    return 0


@_reporting_errors
def run_list(args: argparse.Namespace) -> int:
    scope, scope_id = _scope(args)
    with _open_source(load_settings()) as source:
        if args.csv:
            sys.stdout.write(source.csv(scope, scope_id, args.period))
            return 0
        found = source.list(scope, scope_id, args.period)
    if args.json:
        print(json.dumps(found, indent=2))
    elif not found["budgets"]:
        print("no budgets" + (f" for {scope} {scope_id}" if scope else ""))
    else:
        print("\n".join(render_status(status) for status in found["budgets"]))
    return 0


@_reporting_errors
def run_delete(args: argparse.Namespace) -> int:
    scope, scope_id = _scope(args)
    with _open_source(load_settings()) as source:
        gone = source.delete(scope, scope_id, args.period)
    for budget in gone:
        print(f"deleted: {budget['scope']} {budget['scope_id']} {budget['period']} budget of "
              f"{_usd(budget['amount_usd'])} ({budget['tz']})")
    return 0


def render_status(s: dict) -> str:
    """One budget's status in a line, from the API's JSON shape."""
    b = s["budget"]
    line = (f"{b['scope']} {b['scope_id']} {b['period']} ({b['tz']}): spent {_usd(s['spent_usd'])} of "
            f"{_usd(b['amount_usd'])} ({_percent(s['used_share'])}) since {s['period_start']}; projected "
            f"{_usd(s['projected_usd'])} by {s['period_end']} at {_usd(s['daily_rate_usd'])}/day")
    if s["projected_exceed_at"]:
        line += f", exceeding on {s['projected_exceed_at']}"
    crossed = ", ".join(f"{t}%" for t in s["thresholds_crossed"])
    return line + f"; thresholds {','.join(map(str, b['thresholds']))}" + (f" (crossed {crossed})" if crossed else "")


def _usd(text: str) -> str:
    """An exact decimal string as dollars with at least cents: "12.5" -> "$12.50", "0.000123" as it is."""
    amount = Decimal(text)
    return f"${amount.quantize(Decimal('0.01')) if amount.as_tuple().exponent > -2 else amount}"


def _percent(share: str) -> str:
    return f"{(Decimal(share) * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}%"


@contextmanager
def _open_source(settings: Settings) -> Iterator[Any]:
    try:
        client = connect(settings.clickhouse.url)
    except EmbeddedStoreBusy as busy:
        print(f"meterline: {busy}; asking the running worker's HTTP API at {settings.api.url}", file=sys.stderr)
        yield WorkerBudgets(settings.api.url, settings.api.admin_token)
        return
    try:
        yield LocalBudgets(BudgetService.over(client, settings.budgets.trend_days))
    finally:
        client.close()


class LocalBudgets:
    """The store itself (no worker holds it). Answers in the API's JSON shapes."""

    def __init__(self, service: BudgetService) -> None:
        self._service = service

    def put(self, budget: Budget) -> dict:
        return jsonable(self._service.put(budget, _now()))

    def list(self, scope: str | None, scope_id: str | None, period: str | None) -> dict:
        return jsonable(self._service.statuses(scope, scope_id, period, _now()))

    def csv(self, scope: str | None, scope_id: str | None, period: str | None) -> str:
        return status_csv(self._service.statuses(scope, scope_id, period, _now()).budgets)

    def delete(self, scope: str, scope_id: str, period: str | None) -> list[dict]:
        gone = self._service.store.delete(scope, scope_id, period, _now())
        if not gone:
            raise Unavailable(f"no {period + ' ' if period else ''}budget for {scope} {scope_id!r}")
        return jsonable(gone)


class WorkerBudgets:
    """The running worker's HTTP API with the admin token (the embedded store is held by that worker)."""

    def __init__(self, url: str, token: str) -> None:
        self._url, self._token = url.rstrip("/"), token

    def put(self, budget: Budget) -> dict:
        body = {"scope": budget.scope, "scope_id": budget.scope_id, "amount_usd": str(budget.amount_usd),
                "period": budget.period, "tz": budget.tz, "thresholds": list(budget.thresholds)}
        return json.loads(self._call("PUT", "budgets", {}, json.dumps(body).encode()))

    def list(self, scope: str | None, scope_id: str | None, period: str | None) -> dict:
        return json.loads(self._call("GET", "budgets", _params(scope, scope_id, period)))

    def csv(self, scope: str | None, scope_id: str | None, period: str | None) -> str:
        return self._call("GET", "budgets.csv", _params(scope, scope_id, period)).decode()

    def delete(self, scope: str, scope_id: str, period: str | None) -> list[dict]:
        return json.loads(self._call("DELETE", "budgets", _params(scope, scope_id, period)))["deleted"]

    def _call(self, method: str, route: str, params: dict, body: bytes | None = None) -> bytes:
        if not self._token:
            raise Unavailable("the embedded store is held by another process, and METERLINE_API_ADMIN_TOKEN is not "
                              "set to ask its HTTP API")
        url = f"{self._url}{PREFIX_V1}/{route}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, data=body, method=method, headers={
            "Authorization": f"Bearer {self._token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:500]
            try:
                detail = json.loads(detail)["detail"]
            except (ValueError, KeyError, TypeError):
                pass
            raise Unavailable(f"the worker's HTTP API at {self._url} answered {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise Unavailable(f"the embedded store is held by another process, and its HTTP API at {self._url} "
                              f"did not answer ({error}); stop that process or start its worker") from None


def _params(scope: str | None, scope_id: str | None, period: str | None) -> dict:
    params = {scope: scope_id} if scope else {}
    return {**params, "period": period} if period else params


def _now() -> datetime:
    return datetime.now(timezone.utc)
