"""Budget routes of the HTTP API, mounted next to the usage routes (pipeline/usage/api.py) with
:func:`add_budget_routes`, which also adds their paths and schemas to the served OpenAPI document.

* ``GET /api/v1/budgets[?key=|org=|project=][&period=]``: budgets with their status now. The admin token reads
  any (all of them without a scope); a key token reads its own key's (the default), never another's (403).
* ``GET /api/v1/budgets.csv``: the same figures as CSV (pipeline/budgets/export.py).
* ``PUT /api/v1/budgets`` (admin token): create or replace one budget; JSON body below; answers its status.
* ``DELETE /api/v1/budgets?key=|org=|project=[&period=]`` (admin token): delete; 404 when there is none.

The body of PUT: ``{"scope": "key", "scope_id": "K", "amount_usd": "100.00", "period": "month", "tz": "UTC",
"thresholds": [50, 80, 100]}`` (period, tz and thresholds optional). Amounts are decimal strings: a JSON number
is refused (it may be a rounded float).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone

import msgspec
from aiohttp import web
from clickhouse_connect.driver.client import Client

from pipeline.usage.api import OPENAPI_EXTENSIONS, PREFIX_V1, ApiError, Run, authenticate, json_errors, jsonable
from pipeline.budgets.export import status_csv
from pipeline.budgets.model import PERIOD_WORDS, PERIODS, Budget, BudgetError, check_period, check_scope, make_budget
from pipeline.budgets.status import BudgetMeter, BudgetStatus
from pipeline.budgets.store import BudgetStore
from pipeline.config import ApiSettings
from pipeline.usage.ranges import SCOPES, QueryError

PATH, CSV_PATH = f"{PREFIX_V1}/budgets", f"{PREFIX_V1}/budgets.csv"


@dataclasses.dataclass(frozen=True)
class BudgetList:
    as_of: datetime  # UTC
    budgets: tuple[BudgetStatus, ...]


@dataclasses.dataclass(frozen=True)
class DeletedBudgets:
    deleted: tuple[Budget, ...]


class BudgetBody(msgspec.Struct, forbid_unknown_fields=True):
    """PUT /api/v1/budgets. ``amount_usd``: a decimal string (numbers are refused with a clear 400)."""

    scope: str
    scope_id: str
    amount_usd: str | int | float
    period: str = "month"
    tz: str = "UTC"
    thresholds: list[int] | None = None


class BudgetService:
    """The store and the status meter over one client. Synchronous: call it through ``run`` (its thread)."""

    def __init__(self, store: BudgetStore, meter: BudgetMeter) -> None:
        self.store, self.meter = store, meter

    @classmethod
    def over(cls, client: Client, trend_days: int) -> "BudgetService":
        return cls(BudgetStore(client), BudgetMeter(client, trend_days))

    def statuses(self, scope: str | None, scope_id: str | None, period: str | None, now: datetime) -> BudgetList:
        budgets = [b for b in self.store.list(scope, scope_id) if period is None or b.period == period]
        return BudgetList(now, tuple(self.meter.statuses(budgets, now)))

    def put(self, budget: Budget, now: datetime) -> BudgetStatus:
        return self.meter.status(self.store.put(budget, now), now)


def add_budget_routes(app: web.Application, service: BudgetService, run: Run, settings: ApiSettings,
                      clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
    """Mount the budget routes on ``app`` (which serves the usage routes' openapi.json). ``clock``: the
    current time, in UTC (statuses are computed as of it)."""
    routes = _BudgetRoutes(service, run, settings, clock)
    app.router.add_get(PATH, json_errors(routes.list))
    app.router.add_put(PATH, json_errors(routes.put))
    app.router.add_delete(PATH, json_errors(routes.delete))
    app.router.add_get(CSV_PATH, json_errors(routes.csv))
    if OPENAPI_EXTENSIONS not in app:
        app[OPENAPI_EXTENSIONS] = []
    app[OPENAPI_EXTENSIONS].append(add_openapi)


class _BudgetRoutes:
    def __init__(self, service: BudgetService, run: Run, settings: ApiSettings,
                 clock: Callable[[], datetime]) -> None:
        self._service, self._run, self._settings, self._now = service, run, settings, clock

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response(jsonable(await self._statuses(request)))

    async def csv(self, request: web.Request) -> web.Response:
        found = await self._statuses(request)
        scope = "-".join(filter(None, (request.query.get(s) for s in SCOPES))) or "all"
        return web.Response(text=status_csv(found.budgets), content_type="text/csv", charset="utf-8", headers={
            "Content-Disposition": f'attachment; filename="budgets-{_safe(scope)}-{found.as_of:%Y%m%dT%H%M%SZ}.csv"'})

    async def put(self, request: web.Request) -> web.Response:
        self._admin(request, "set budgets")
        try:
            body = msgspec.json.decode(await request.read(), type=BudgetBody)
        except msgspec.ValidationError as error:
            raise BudgetError("bad body", f"{error} (body: {{\"scope\", \"scope_id\", \"amount_usd\": \"100.00\", "
                                          "\"period\", \"tz\", \"thresholds\": [50, 80, 100]}})") from None
        except msgspec.DecodeError as error:
            raise BudgetError("bad body", f"the body is not JSON: {error}") from None
        budget = make_budget(body.scope, body.scope_id, body.period, body.amount_usd, body.tz, body.thresholds)
        return web.json_response(jsonable(await self._run(self._service.put, budget, self._now())))

    async def delete(self, request: web.Request) -> web.Response:
        self._admin(request, "delete budgets")
        scope, scope_id = _scope(request) or (None, None)
        if scope is None:
            raise QueryError("missing scope", "give one of key, org or project")
        period = _period(request)
        gone = await self._run(self._service.store.delete, scope, scope_id, period, self._now())
        if not gone:
            what = f"{PERIOD_WORDS[period]} budget" if period else "budget"
            raise ApiError(404, "not found", f"no {what} for {scope} {scope_id!r}")
        return web.json_response(jsonable(DeletedBudgets(tuple(gone))))

    async def _statuses(self, request: web.Request) -> BudgetList:
        principal = authenticate(self._settings, request.headers.get("Authorization", ""))
        given = _scope(request)
        if given is None and principal.api_key_id is not None:
            given = ("key", principal.api_key_id)  # a key token reads its own key by default
        if not principal.admin and given != ("key", principal.api_key_id):
            raise ApiError(403, "forbidden", "this token may read only its own key's budgets")
        scope, scope_id = given or (None, None)
        return await self._run(self._service.statuses, scope, scope_id, _period(request), self._now())

    def _admin(self, request: web.Request, what: str) -> None:
        if not authenticate(self._settings, request.headers.get("Authorization", "")).admin:
            raise ApiError(403, "forbidden", f"only the admin token may {what}; a key token reads its own key's")


def _scope(request: web.Request) -> tuple[str, str] | None:
    given = [(scope, request.query[scope]) for scope in SCOPES if scope in request.query]
    if len(given) > 1:
        raise QueryError("ambiguous scope", "give at most one of key, org or project")
    if not given:
        return None
    scope, scope_id = given[0]
    check_scope(scope, scope_id)
    return scope, scope_id


def _period(request: web.Request) -> str | None:
    period = request.query.get("period") or None
    if period is not None:
        check_period(period)
    return period


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:64]


# ---- OpenAPI -------------------------------------------------------------------------------------------

_SCOPE_PARAMETERS = [
    {"name": "key", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "api_key_id (a key token defaults to its own key and may read no other)"},
    {"name": "org", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "org_id (admin token only)"},
    {"name": "project", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "project_id (admin token only)"},
    {"name": "period", "in": "query", "required": False, "schema": {"type": "string", "enum": list(PERIODS)},
     "description": "only the budget of this period"},
]


def add_openapi(document: dict) -> None:
    """Adds the budget paths and their schemas to an OpenAPI document built by pipeline.usage.api."""
    _, schemas = msgspec.json.schema_components([BudgetList, DeletedBudgets, BudgetStatus, BudgetBody],
                                                ref_template="#/components/schemas/{name}")
    document["components"]["schemas"].update(schemas)
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    def responses(ok: str, schema: dict, extra: dict | None = None) -> dict:
        return {"200": {"description": ok, "content": schema}, "400": {"description": "bad parameters", **error},
                "401": {"description": "missing or invalid token", **error},
                "403": {"description": "the token may not do this", **error}, **(extra or {})}

    def ref(name: str) -> dict:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}

    secured = {"security": [{"bearer": []}]}
    document["paths"][PATH] = {
        "get": {"operationId": "budgets", "summary": "Budgets with their status now (spent, projected, limit)",
                "parameters": _SCOPE_PARAMETERS, "responses": responses("budgets", ref("BudgetList")), **secured},
        "put": {"operationId": "set_budget", "summary": "Admin token only: create or replace a budget",
                "requestBody": {"required": True, "content": ref("BudgetBody")},
                "parameters": [], "responses": responses("the stored budget's status", ref("BudgetStatus")),
                **secured},
        "delete": {"operationId": "delete_budget",
                   "summary": "Admin token only: delete a scope's budget (one period, or all of them)",
                   "parameters": _SCOPE_PARAMETERS, **secured,
                   "responses": responses("what was deleted", ref("DeletedBudgets"),
                                          {"404": {"description": "no such budget", **error}})},
    }
    document["paths"][CSV_PATH] = {"get": {
        "operationId": "budgets_csv", "summary": "The budgets' status as CSV (one row per budget)",
        "parameters": _SCOPE_PARAMETERS, **secured,
        "responses": responses("CSV", {"text/csv": {"schema": {"type": "string"}}})}}
