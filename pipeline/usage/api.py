"""HTTP API for the usage view: JSON under ``/api/v1/`` plus a streamed CSV export and an OpenAPI document.

Auth is ``Authorization: Bearer <token>``: the admin token reads every key, org and project; a key token
(:mod:`pipeline.usage.tokens`) reads only its own key (``/api/v1/whoami`` names it). Tokens are never logged, nor are
parameter values. Errors are JSON ``{"error": ..., "detail": ...}``: 400 for bad parameters, 401 (with
``WWW-Authenticate: Bearer``) for a missing or bad token, 403 for a token reading what it may not, 404/405 for
unknown routes and methods under /api/v1/, 503 when ClickHouse cannot answer.

Each route's parameters are declared once (:class:`~pipeline.usage.parameters.Param`, below): the OpenAPI
document and the request checks are both derived from those declarations (docs/usage-queries.md).

:func:`add_usage_page` serves the key owner's usage page (``/usage``, docs/usage-page.md): static files from
``pipeline/usage/web`` that read this API in the browser with the token the user gives them.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
import tempfile
import traceback
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import msgspec
from aiohttp import web
from clickhouse_connect.driver.exceptions import ClickHouseError

from pipeline.config import ApiSettings
from pipeline.usage.export import csv_chunks, decimal_text
from pipeline.usage.parameters import Param, QueryError, read_query
from pipeline.usage.forecast import DEFAULT_TREND_DAYS, MonthToDate, SpendTrend
from pipeline.usage.query import (ORDERS, BusiestKeys, Comparison, KeyAlerts, KeyList, ModelBreakdown, PeakHours,
                                  Series, Summary, UnpricedModels, UsageQueries)
from pipeline.usage.ranges import (GRANULARITY_SCHEMA, ID_EXPECT, ID_SCHEMA, INSTANT_EXPECT, INSTANT_SCHEMA,
                                   MAX_BUCKETS, MAX_ID_CHARS, NO_CONTROL_CHARACTERS, SCOPE_SCHEMA, ZONE_EXPECT,
                                   ZONE_SCHEMA, UsageRequest, parse_request, parse_scope, parse_zone)
from pipeline.usage.tokens import TokenError, verify

log = logging.getLogger(__name__)
Run = Callable[..., Awaitable[Any]]
PREFIX_V1 = "/api/v1"
# The CSV is spooled (memory up to this size, then a temp file) so the ClickHouse stream is read at
# ClickHouse's pace in one call; a slow HTTP client then never holds the ClickHouse thread or its handle.
SPOOL_IN_MEMORY = 4 * 1024 * 1024
SEND_CHUNK = 64 * 1024
KEYS_DEFAULT_LIMIT, KEYS_MAX_LIMIT = 100, 1000
BUSIEST_DEFAULT_LIMIT, BUSIEST_MAX_LIMIT = 10, 100
# busiest-keys reads every key: the range rules are checked by parse_request as for a key, whose id this is.
EVERY_KEY = "*"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclasses.dataclass(frozen=True)
class Principal:
    admin: bool
    api_key_id: str | None = None  # set for key tokens


@dataclasses.dataclass(frozen=True)
class Identity:
    """What the bearer token may read: everything (``admin``) or the usage of ``api_key_id`` only."""

    admin: bool
    api_key_id: str | None


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


# ---- parameters, declared once: the OpenAPI document and the checks both come from these ----------------

SCOPE = Param("scope", SCOPE_SCHEMA, "What `id` names: an api_key_id (`key`), an org_id (`org`) or a project_id "
              "(`project`); `all` reads every key and takes no `id` (admin token only). A key token reads only "
              "`scope=key` with its own key's id (see `/api/v1/whoami`).",
              f"one of {', '.join(SCOPE_SCHEMA['enum'])}", required=True, error="unknown scope")
ID = Param("id", ID_SCHEMA, "The api_key_id, org_id or project_id to read (exact match); required for every scope but "
           "`all`, which takes none.", ID_EXPECT, examples=("key_globex_chat",))
FROM = Param("from", INSTANT_SCHEMA, "Start of the range, inclusive: a date `YYYY-MM-DD` (midnight in `tz`) or "
             "an RFC 3339 date-time with an offset. The rules that involve other parameters are in the "
             "operation's description.", INSTANT_EXPECT, required=True,
             examples=("2026-11-01", "2026-11-01T09:00:00Z"))
TO = Param("to", INSTANT_SCHEMA, "End of the range, exclusive; the same formats as `from`.", INSTANT_EXPECT,
           required=True, examples=("2026-11-08", "2026-11-02T09:00:00+01:00"))
TZ = Param("tz", {**ZONE_SCHEMA, "default": "UTC"}, "IANA time zone of dates, day/week/month buckets and peak "
           "hours. Only zones that Python's zoneinfo and ClickHouse both know and read alike are accepted (this "
           "enum); see docs/usage-queries.md.", ZONE_EXPECT, error="unknown time zone")
GRANULARITY = Param("granularity", {**GRANULARITY_SCHEMA, "default": "auto"},
                    "Bucket size; `auto` follows the range's local length: hour up to 2 days, day up to 92, week "
                    "(ISO, Monday) up to 366, else month.", f"one of {', '.join(GRANULARITY_SCHEMA['enum'])}",
                    error="unknown granularity")
ORDER = Param("order", {"type": "string", "enum": list(ORDERS), "default": "cost"},
              "Sort the models by cost or by requests (descending).", f"one of {', '.join(ORDERS)}",
              error="unknown order")
Q = Param("q", {"type": "string", "maxLength": MAX_ID_CHARS, "pattern": NO_CONTROL_CHARACTERS, "default": ""},
          "Only api_key_ids starting with this prefix.",
          f"at most {MAX_ID_CHARS} characters without control characters (U+0000..U+001F, U+007F)")
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": KEYS_MAX_LIMIT, "default": KEYS_DEFAULT_LIMIT},
              "At most this many keys.", f"a whole number from 1 to {KEYS_MAX_LIMIT} (digits only)")
RANGE_PARAMS = (SCOPE, ID, FROM, TO, TZ)
TOP_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": BUSIEST_MAX_LIMIT,
                            "default": BUSIEST_DEFAULT_LIMIT},
                  "At most this many keys.", f"a whole number from 1 to {BUSIEST_MAX_LIMIT} (digits only)")
KEY = Param("key", ID_SCHEMA, "The api_key_id whose spike alerts to list (a key token: its own key's id, see "
            "`/api/v1/whoami`).", ID_EXPECT, required=True, examples=("key_globex_chat",))

RANGE_RULES = """Rules across parameters (a 400 names the one broken):
- `id` is required for scopes `key`, `org` and `project` (`missing 'id'`) and refused for `all` (`unexpected 'id'`);
- `from` must be before `to` (`empty range`);
- the range may span at most {max_range_days} days of local wall-clock time (`range too long`);
- at least one 15-minute window must start in [`from`, `to`): usage is stored per 15-minute window of UTC \
(`range holds no window`);
- both instants lie in [1970-01-01T00:00:00Z, 2106-01-01T00:00:00Z], after applying the offset or `tz` \
(`out of supported range`);
- day and month buckets cannot start before 1970-01-01 in `tz`, week buckets not before Monday 1970-01-05 in \
`tz`: ClickHouse dates begin on 1970-01-01 (`out of supported range`; quarter-hour and hour buckets have no such \
limit);
- at most {max_buckets} buckets of the chosen or automatic granularity (`too many buckets`)."""


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    summary: str
    params: tuple[Param, ...]
    response: type | None  # None: text/csv (export) or the OpenAPI document itself
    public: bool = False

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params)

    @property
    def is_range(self) -> bool:
        return FROM in self.params


ROUTES = (
    Route("summary", "Totals over the range: tokens, requests, errors, cost, averages", RANGE_PARAMS, Summary),
    Route("models", "Per model x provider: tokens, cost, requests and share of requests", RANGE_PARAMS + (ORDER,),
          ModelBreakdown),
    Route("series", "Time series with zero-filled buckets", RANGE_PARAMS + (GRANULARITY,), Series),
    Route("peak-hours", "Requests per local hour of day (0..23)", RANGE_PARAMS, PeakHours),
    Route("export.csv", "CSV: one row per bucket x key x model x provider", RANGE_PARAMS + (GRANULARITY,), None),
    Route("compare", "Totals of the range and of its previous period (the same local length just before `from`, "
          "in `tz`), with the change of each measure", RANGE_PARAMS, Comparison),
    Route("month-to-date", "Cost of the current calendar month in `tz` so far, and its projection to the month's "
          "end from the recent daily trend (the budgets' projection rule)", (SCOPE, ID, TZ), MonthToDate),
    Route("busiest-keys", "Admin token only: the keys with the most requests in the range (every key)",
          (FROM, TO, TZ, TOP_LIMIT), BusiestKeys),
    Route("alerts", "A key's usage-spike alerts, open or resolved, that were open at some instant of the range "
          "(admin token, or that key's token)", (KEY, FROM, TO, TZ), KeyAlerts),
    Route("keys", "Admin token only: the api_key_ids with recorded usage, sorted (the usage page's key selector)",
          (Q, LIMIT), KeyList),
    Route("unpriced", "Admin token only: every model counted without a price in the range (every key), with its "
          "unpriced requests: what to alias or price (docs/pricing.md)", (FROM, TO, TZ), UnpricedModels),
    Route("whoami", "What the bearer token may read: every scope (admin) or one key's usage", (), Identity),
    Route("openapi.json", "This OpenAPI 3.1 document", (), None, public=True),
)


def create_api_app(queries: UsageQueries, run: Run, settings: ApiSettings, *, clock: Clock = utc_now,
                   trend_days: int = DEFAULT_TREND_DAYS) -> web.Application:
    """An application serving the API; ``run(fn, *args)`` must run blocking calls off the loop, one at a time
    per client (the worker passes ``ClickHouse.run``). ``clock``: the current time (aware), for the month to
    date; ``trend_days``: its projection's trend window in complete local days (METERLINE_BUDGET_TREND_DAYS)."""
    app = web.Application()
    add_api_routes(app, queries, run, settings, clock=clock, trend_days=trend_days)
    return app


def add_api_routes(app: web.Application, queries: UsageQueries, run: Run, settings: ApiSettings, *,
                   clock: Clock = utc_now, trend_days: int = DEFAULT_TREND_DAYS) -> None:
    """Mount the routes on an existing application (e.g. the worker's, next to /metrics), and answer unknown
    paths and methods under /api/v1/ with the JSON error shape too. Call before the application starts.
    ``clock`` and ``trend_days``: as for :func:`create_api_app`."""
    api = _UsageApi(queries, run, settings, SpendTrend(queries, trend_days), clock)
    handlers = {"summary": api.summary, "models": api.models, "series": api.series, "peak-hours": api.peak_hours,
                "export.csv": api.export_csv, "compare": api.compare, "month-to-date": api.month_to_date,
                "busiest-keys": api.busiest_keys, "alerts": api.alerts, "keys": api.keys, "unpriced": api.unpriced,
                "whoami": api.whoami,
                "openapi.json": api.openapi}
    for route in ROUTES:
        app.router.add_get(f"{PREFIX_V1}/{route.name}", _guarded(route, api, handlers[route.name]))
    app.middlewares.append(_json_http_errors)


Handler = Callable[[web.Request, Principal | None, dict[str, Any]], Awaitable[web.StreamResponse]]


class _UsageApi:
    def __init__(self, queries: UsageQueries, run: Run, settings: ApiSettings, spend: SpendTrend,
                 clock: Clock) -> None:
        self._queries, self._run, self._settings = queries, run, settings
        self._spend, self._now = spend, clock

    async def summary(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        usage_request = self._usage_request(principal, values)
        return web.json_response(jsonable(await self._run(self._queries.summary, usage_request)))

    async def models(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        usage_request = self._usage_request(principal, values)
        return web.json_response(jsonable(await self._run(self._queries.models, usage_request, values["order"])))

    async def series(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        usage_request = self._usage_request(principal, values)
        return web.json_response(jsonable(await self._run(self._queries.series, usage_request)))

    async def peak_hours(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        usage_request = self._usage_request(principal, values)
        return web.json_response(jsonable(await self._run(self._queries.peak_hours, usage_request)))

    async def export_csv(self, request: web.Request, principal: Principal, values: dict) -> web.StreamResponse:
        usage_request = self._usage_request(principal, values)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            await self._run(_spool, csv_chunks(self._queries, usage_request), spool)
            spool.seek(0)
            response = web.StreamResponse(headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{export_filename(usage_request)}"'})
            await response.prepare(request)
            # Local reads of at most SEND_CHUNK bytes: cheap enough for the loop, unlike a ClickHouse stream.
            while chunk := spool.read(SEND_CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    async def compare(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        usage_request = self._usage_request(principal, values)
        return web.json_response(jsonable(await self._run(self._queries.compare, usage_request)))

    async def month_to_date(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        scope_id = parse_scope(values["scope"], values["id"])  # "" for scope all, as in every other answer
        self._may_read(principal, values["scope"], scope_id)
        parse_zone(values["tz"])
        answer = await self._run(self._spend.month_to_date, values["scope"], scope_id, values["tz"], self._now())
        return web.json_response(jsonable(answer))

    async def busiest_keys(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        if not principal.admin:
            raise ApiError(403, "forbidden", "only the admin token may rank keys; a key token reads its own key")
        usage_request = parse_request("key", EVERY_KEY, values["from"], values["to"], values["tz"], None,
                                      self._settings.max_range_days)
        return web.json_response(jsonable(await self._run(self._queries.busiest_keys, usage_request,
                                                          values["limit"])))

    async def alerts(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        usage_request = self._usage_request(principal, {**values, "scope": "key", "id": values["key"]})
        return web.json_response(jsonable(await self._run(self._queries.alerts, usage_request)))

    async def keys(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        if not principal.admin:
            raise ApiError(403, "forbidden", "only the admin token may list keys; a key token reads its own key")
        return web.json_response(jsonable(await self._run(self._queries.keys, values["q"], values["limit"])))

    async def unpriced(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        if not principal.admin:
            raise ApiError(403, "forbidden", "only the admin token may list unpriced models (they span every key)")
        usage_request = parse_request("key", EVERY_KEY, values["from"], values["to"], values["tz"], None,
                                      self._settings.max_range_days)
        return web.json_response(jsonable(await self._run(self._queries.unpriced, usage_request)))

    async def whoami(self, request: web.Request, principal: Principal, values: dict) -> web.Response:
        return web.json_response(jsonable(Identity(principal.admin, principal.api_key_id)))

    async def openapi(self, request: web.Request, principal: Principal | None, values: dict) -> web.Response:
        return web.json_response(openapi_document(self._settings.max_range_days,
                                                  request.app.get(OPENAPI_EXTENSIONS, ())))

    def _usage_request(self, principal: Principal, values: dict) -> UsageRequest:
        scope, scope_id = values["scope"], values["id"]
        self._may_read(principal, scope, scope_id)
        return parse_request(scope, scope_id, values["from"], values["to"], values["tz"], values.get("granularity"),
                             self._settings.max_range_days)

    @staticmethod
    def _may_read(principal: Principal, scope: str, scope_id: str) -> None:
        """ApiError 403 unless the token is the admin's or the key token of ``scope_id``."""
        if not principal.admin and (scope != "key" or scope_id != principal.api_key_id):
            raise ApiError(403, "forbidden", "this token may read only its own key's usage (scope=key and its "
                                             "key's id; /api/v1/whoami names it)")

    def authenticate(self, header: str) -> Principal:
        return authenticate(self._settings, header)


_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def authenticate(settings: ApiSettings, header: str) -> Principal:
    """Who an ``Authorization`` header speaks for; ApiError 401 for a missing, invalid or expired token."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>",
                       {"WWW-Authenticate": 'Bearer realm="meterline"'})
    admin = settings.admin_token
    # Header bytes that are not UTF-8 arrive as lone surrogates: encode them too; they compare unequal.
    if admin and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), admin.encode()):
        return Principal(admin=True)
    # A key token has RFC 6750 b64token characters only: anything else never reaches the decoder.
    if not _B64TOKEN.fullmatch(token):
        raise ApiError(401, "unauthorized", "the token is not valid",
                       {"WWW-Authenticate": 'Bearer realm="meterline", error="invalid_token"'})
    try:
        key_token = verify(settings.token_secrets, token)
    except TokenError as refused:  # its detail says "expired" when the token is genuine but too old
        raise ApiError(401, "unauthorized", refused.detail, {"WWW-Authenticate": (
            f'Bearer realm="meterline", error="invalid_token", error_description="{refused.description}"')})
    return Principal(admin=False, api_key_id=key_token.api_key_id)


def _guarded(route: Route, api: _UsageApi, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Authenticate (unless public), read the declared parameters, run the handler (see :func:`json_errors`)."""
    path = f"{PREFIX_V1}/{route.name}"

    async def checked(request: web.Request) -> web.StreamResponse:
        principal = None if route.public else api.authenticate(request.headers.get("Authorization", ""))
        values = read_query(request.rel_url.raw_query_string, route.params, path)
        return await handler(request, principal, values)
    return json_errors(checked)


def json_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Wraps a handler: QueryError -> 400, ApiError -> its status, ClickHouse failures -> 503, anything else
    -> 500, all as JSON ``{"error", "detail"}``. Nothing of a parameter value or a token is logged."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except QueryError as error:
            return _error(400, error.error, error.detail)
        except ApiError as error:
            return _error(error.status, error.error, error.detail, error.headers)
        except ClickHouseError as error:
            log.error("usage query failed on %s: %s", request.path, error)  # the path only: no query, no headers
            return _error(503, "store unavailable", "ClickHouse could not answer; see the server log")
        except Exception as error:  # a bug of ours: say so, log where (no message: it may quote a value)
            log.error("unexpected %s on %s:\n%s", type(error).__name__, request.path,
                      "".join(traceback.format_tb(error.__traceback__)))
            return _error(500, "internal error", "the server failed to answer; see its log")
    return guarded


@web.middleware
async def _json_http_errors(request: web.Request, handler) -> web.StreamResponse:
    """aiohttp's own 404 and 405 under /api/v1/ in the JSON error shape (elsewhere untouched)."""
    if not request.path.startswith(f"{PREFIX_V1}/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as http:
        if http.status < 400:
            raise
        headers = {"Allow": http.headers["Allow"]} if "Allow" in http.headers else None
        detail = {404: "no such route; the routes are listed in /api/v1/openapi.json",
                  405: f"this route answers {http.headers.get('Allow', 'GET')} only"}.get(http.status, http.text or "")
        return _error(http.status, (http.reason or "error").lower(), detail, headers)


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status, headers=headers)


def _spool(chunks: Iterable[bytes], spool: IO[bytes]) -> None:
    for chunk in chunks:
        spool.write(chunk)


def export_filename(request: UsageRequest) -> str:
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", request.scope_id)[:64]
    what = f"{request.scope}-{safe_id}" if safe_id else request.scope
    return f"usage-{what}-{request.start.date()}-{request.end.date()}-{request.granularity}.csv"


def jsonable(value: Any) -> Any:
    """Plain JSON values: dataclasses as objects, Decimals as exact strings, datetimes as RFC 3339."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value


# Route groups mounted next to these (e.g. pipeline/budgets/api.py) add their paths and schemas to the served
# OpenAPI document through this list on the application: fn(document) -> None.
OPENAPI_EXTENSIONS = web.AppKey("openapi_extensions", list)


def openapi_document(max_range_days: int | None = None, extensions: Iterable[Callable[[dict], None]] = ()) -> dict:
    """The OpenAPI 3.1 document, generated from ROUTES (their declared parameters) and the result dataclasses,
    so it cannot drift from what is served and checked. ``max_range_days`` is this server's range limit; each
    of ``extensions`` then adds the paths and schemas of a route group mounted on the same application."""
    _, schemas = msgspec.json.schema_components([r.response for r in ROUTES if r.response],
                                                ref_template="#/components/schemas/{name}")
    schemas["Error"] = {"type": "object", "required": ["error", "detail"],
                        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    rules = RANGE_RULES.format(max_range_days=f"{max_range_days:,}" if max_range_days else "an unlimited number of",
                               max_buckets=f"{MAX_BUCKETS:,}")
    paths = {}
    for route in ROUTES:
        if route.response is not None:
            content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response.__name__}"}}}
        else:
            content = {"text/csv": {"schema": {"type": "string"}}} if route.name.endswith(".csv") else {
                "application/json": {"schema": {"type": "object"}}}
        responses: dict = {"200": {"description": route.summary, "content": content},
                           "400": {"description": "bad parameters: unknown, repeated, undecodable or not as "
                                                  "declared, or a rule across parameters broken", **error}}
        if not route.public:
            responses.update({"401": {"description": "missing or invalid token", **error},
                              "403": {"description": "the token may not read this scope", **error}})
        operation = {"operationId": route.name.replace(".", "_").replace("-", "_"), "summary": route.summary,
                     "security": [] if route.public else [{"bearer": []}],
                     "parameters": [param.openapi() for param in route.params], "responses": responses}
        if route.is_range:
            operation["description"] = rules
        paths[f"{PREFIX_V1}/{route.name}"] = {"get": operation}
    document = {"openapi": "3.1.0",
                "info": {"title": "meterline usage API", "version": "1",
                         "description": "Every parameter of the usage routes is checked as declared here; "
                                        "parameters not declared for a route, repeated parameters and "
                                        "percent-escapes that are not UTF-8 are a 400."},
                "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                               "schemas": schemas},
                "paths": paths}
    for extend in extensions:
        extend(document)
    return document


# ---- the usage page ---------------------------------------------------------------------------------------

WEB_DIR = Path(__file__).with_name("web")
PAGE_PATH = "/usage"
ASSETS_PATH = f"{PAGE_PATH}/assets"
# Only these kinds of file are served from WEB_DIR, each with an explicit type (ES modules need a JavaScript
# type, and nosniff makes browsers hold us to it).
ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".md": "text/markdown; charset=utf-8", ".svg": "image/svg+xml"}
# The page needs nothing from elsewhere: scripts, styles and API calls are same-origin (no inline script, so a
# script injected through the data could not run). The token lives in the URL fragment and sessionStorage,
# so no referrer must carry the URL anywhere; no-cache revalidates assets (Last-Modified) after an upgrade.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def add_usage_page(app: web.Application, web_dir: Path = WEB_DIR) -> None:
    """Serve the key owner's usage page at /usage (and redirect / to it), its files under /usage/assets/.
    Mount it next to :func:`add_api_routes`: the page calls /api/v1/ on the same origin."""
    assets = page_assets(web_dir)
    page_file = web_dir / "usage.html"

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(page_file, headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})

    async def asset(request: web.Request) -> web.StreamResponse:
        # A fixed table built at start-up: a request path never reaches the file system.
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        path, content_type = found
        return web.FileResponse(path, headers={**PAGE_HEADERS, "Content-Type": content_type})

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(PAGE_PATH)

    app.router.add_get("/", home)
    app.router.add_get(PAGE_PATH, page)
    app.router.add_get(f"{ASSETS_PATH}/{{name:.+}}", asset)


def page_assets(web_dir: Path) -> dict[str, tuple[Path, str]]:
    """Relative name ("js/main.js") -> (file, content type) for every servable file under ``web_dir``."""
    if not (web_dir / "usage.html").is_file():
        raise FileNotFoundError(f"the usage page is missing from {web_dir} (package data not installed?)")
    return {path.relative_to(web_dir).as_posix(): (path, ASSET_TYPES[path.suffix])
            for path in sorted(web_dir.rglob("*")) if path.is_file() and path.suffix in ASSET_TYPES}
