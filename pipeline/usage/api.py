"""HTTP API for the usage view: JSON under ``/api/v1/`` plus a streamed CSV export and an OpenAPI document.

Auth is ``Authorization: Bearer <token>``: the admin token reads every key, org and project; a key token
(:mod:`pipeline.usage.tokens`) reads only its own key. Tokens are never logged. Errors are JSON
``{"error": ..., "detail": ...}``: 400 for bad parameters, 401 (with ``WWW-Authenticate: Bearer``) for a
missing or bad token, 403 for a token reading what it may not.

:func:`add_usage_page` serves the key owner's usage page (``/usage``, docs/usage-page.md): static files from
``pipeline/usage/web`` that read this API in the browser with the token the user gives them.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import msgspec
from aiohttp import web
from clickhouse_connect.driver.exceptions import ClickHouseError

from pipeline.config import ApiSettings
from pipeline.usage.export import csv_chunks, decimal_text
from pipeline.usage.query import ORDERS, KeyList, ModelBreakdown, PeakHours, Series, Summary, UnpricedModels, \
    UsageQueries
from pipeline.usage.ranges import GRANULARITIES, SCOPES, QueryError, UsageRequest, parse_period, parse_request
from pipeline.usage.tokens import TokenError, verify

log = logging.getLogger(__name__)
Run = Callable[..., Awaitable[Any]]
PREFIX_V1 = "/api/v1"
# The CSV is spooled (memory up to this size, then a temp file) so the ClickHouse stream is read at
# ClickHouse's pace in one call; a slow HTTP client then never holds the ClickHouse thread or its handle.
SPOOL_IN_MEMORY = 4 * 1024 * 1024
SEND_CHUNK = 64 * 1024
_RANGE_PARAMS = ("key", "org", "project", "from", "to", "tz")
KEYS_DEFAULT_LIMIT, KEYS_MAX_LIMIT = 100, 1000


@dataclasses.dataclass(frozen=True)
class Principal:
    admin: bool
    api_key_id: str | None = None  # set for key tokens


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    summary: str
    parameters: tuple[str, ...]
    response: type | None  # None: text/csv (export) or the OpenAPI document itself
    public: bool = False


ROUTES = (
    Route("summary", "Totals over the range: tokens, requests, errors, cost, averages", _RANGE_PARAMS, Summary),
    Route("models", "Per model x provider: tokens, cost, requests and share of requests",
          _RANGE_PARAMS + ("order",), ModelBreakdown),
    Route("series", "Time series with zero-filled buckets", _RANGE_PARAMS + ("granularity",), Series),
    Route("peak-hours", "Requests per local hour of day (0..23)", _RANGE_PARAMS, PeakHours),
    Route("export.csv", "CSV: one row per bucket x key x model x provider", _RANGE_PARAMS + ("granularity",), None),
    Route("keys", "Admin token only: the api_key_ids with recorded usage, sorted (the usage page's key selector)",
          ("q", "limit"), KeyList),
    Route("unpriced", "Admin token only: every model counted without a price in the range, with its request "
                      "count (alias or price it: docs/pricing.md)", ("from", "to", "tz"), UnpricedModels),
    Route("openapi.json", "This OpenAPI 3.1 document", (), None, public=True),
)


def create_api_app(queries: UsageQueries, run: Run, settings: ApiSettings) -> web.Application:
    """An application serving the API; ``run(fn, *args)`` must run blocking calls off the loop, one at a time
    per client (the worker passes ``ClickHouse.run``)."""
    app = web.Application()
    add_api_routes(app, queries, run, settings)
    return app


def add_api_routes(app: web.Application, queries: UsageQueries, run: Run, settings: ApiSettings) -> None:
    """Mount the routes on an existing application (e.g. the worker's, next to /metrics)."""
    api = _UsageApi(queries, run, settings)
    handlers = {"summary": api.summary, "models": api.models, "series": api.series, "peak-hours": api.peak_hours,
                "export.csv": api.export_csv, "keys": api.keys, "unpriced": api.unpriced,
                "openapi.json": api.openapi}
    for route in ROUTES:
        app.router.add_get(f"{PREFIX_V1}/{route.name}", json_errors(handlers[route.name]))


class _UsageApi:
    def __init__(self, queries: UsageQueries, run: Run, settings: ApiSettings) -> None:
        self._queries, self._run, self._settings = queries, run, settings

    async def summary(self, request: web.Request) -> web.Response:
        return web.json_response(jsonable(await self._run(self._queries.summary, self._usage_request(request))))

    async def models(self, request: web.Request) -> web.Response:
        usage_request = self._usage_request(request)
        order = request.query.get("order", "cost")  # checked by UsageQueries.models (400 on anything else)
        return web.json_response(jsonable(await self._run(self._queries.models, usage_request, order)))

    async def series(self, request: web.Request) -> web.Response:
        return web.json_response(jsonable(await self._run(self._queries.series, self._usage_request(request))))

    async def peak_hours(self, request: web.Request) -> web.Response:
        return web.json_response(jsonable(await self._run(self._queries.peak_hours, self._usage_request(request))))

    async def export_csv(self, request: web.Request) -> web.StreamResponse:
        usage_request = self._usage_request(request)
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

    async def keys(self, request: web.Request) -> web.Response:
        if not self._authenticate(request.headers.get("Authorization", "")).admin:
            raise ApiError(403, "forbidden", "only the admin token may list keys; a key token reads its own key")
        prefix = request.query.get("q", "")
        if len(prefix) > 256:
            raise QueryError("bad 'q'", "the key prefix must be at most 256 characters")
        limit = _key_limit(request.query.get("limit"))
        return web.json_response(jsonable(await self._run(self._queries.keys, prefix, limit)))

    async def unpriced(self, request: web.Request) -> web.Response:
        if not self._authenticate(request.headers.get("Authorization", "")).admin:
            raise ApiError(403, "forbidden", "only the admin token may list unpriced models (they span every key)")
        query = request.query
        for name in ("from", "to"):
            if not query.get(name):
                raise QueryError(f"missing '{name}'", f"'{name}' is required (YYYY-MM-DD or RFC 3339)")
        period = parse_period(query["from"], query["to"], query.get("tz") or "UTC", self._settings.max_range_days)
        return web.json_response(jsonable(await self._run(self._queries.unpriced, period)))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(request.app.get(OPENAPI_EXTENSIONS, ())))

    def _usage_request(self, request: web.Request) -> UsageRequest:
        principal = self._authenticate(request.headers.get("Authorization", ""))
        query = request.query
        given = [(scope, query[scope]) for scope in SCOPES if scope in query]
        if len(given) > 1:
            raise QueryError("ambiguous scope", "give exactly one of key, org or project")
        if not given and principal.api_key_id is not None:
            given = [("key", principal.api_key_id)]  # a key token reads its own key by default
        if not given:
            raise QueryError("missing scope", "give one of key, org or project")
        (scope, scope_id), = given
        if not principal.admin and (scope != "key" or scope_id != principal.api_key_id):
            raise ApiError(403, "forbidden", "this token may read only its own key's usage")
        for name in ("from", "to"):
            if not query.get(name):
                raise QueryError(f"missing '{name}'", f"'{name}' is required (YYYY-MM-DD or RFC 3339)")
        return parse_request(scope, scope_id, query["from"], query["to"], query.get("tz") or "UTC",
                             query.get("granularity"), self._settings.max_range_days)

    def _authenticate(self, header: str) -> Principal:
        return authenticate(self._settings, header)


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
    try:
        key_token = verify(settings.token_secrets, token)
    except TokenError as refused:  # its detail says "expired" when the token is genuine but too old
        raise ApiError(401, "unauthorized", refused.detail, {"WWW-Authenticate": (
            f'Bearer realm="meterline", error="invalid_token", error_description="{refused.description}"')})
    return Principal(admin=False, api_key_id=key_token.api_key_id)


def _key_limit(text: str | None) -> int:
    if text in (None, ""):
        return KEYS_DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= KEYS_MAX_LIMIT:
        raise QueryError("bad 'limit'", f"'limit' must be a whole number from 1 to {KEYS_MAX_LIMIT}, got {text!r}")
    return int(text)


def json_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Wraps a handler: QueryError -> 400, ApiError -> its status, ClickHouse failures -> 503, all as JSON."""
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except QueryError as error:
            return web.json_response({"error": error.error, "detail": error.detail}, status=400)
        except ApiError as error:
            return web.json_response({"error": error.error, "detail": error.detail}, status=error.status,
                                     headers=error.headers)
        except ClickHouseError as error:
            log.error("usage query failed on %s: %s", request.path, error)  # the path only: no query, no headers
            return web.json_response({"error": "store unavailable", "detail": "ClickHouse could not answer; "
                                      "see the server log"}, status=503)
    return guarded


def _spool(chunks: Iterable[bytes], spool: IO[bytes]) -> None:
    for chunk in chunks:
        spool.write(chunk)


def export_filename(request: UsageRequest) -> str:
    safe_id = re.sub(r"[^A-Za-z0-9._-]", "_", request.scope_id)[:64]
    return f"usage-{request.scope}-{safe_id}-{request.start.date()}-{request.end.date()}-{request.granularity}.csv"


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


_PARAMETERS = {
    "key": ("api_key_id to read (a key token defaults to its own key)", {"type": "string"}),
    "org": ("org_id to read (admin token only)", {"type": "string"}),
    "project": ("project_id to read (admin token only)", {"type": "string"}),
    "from": ("start, inclusive: YYYY-MM-DD (midnight in tz) or RFC 3339 with offset", {"type": "string"}),
    "to": ("end, exclusive: YYYY-MM-DD (midnight in tz) or RFC 3339 with offset", {"type": "string"}),
    "tz": ("IANA time zone for dates and buckets", {"type": "string", "default": "UTC"}),
    "granularity": ("bucket size; default follows the range length",
                    {"type": "string", "enum": [*GRANULARITIES, "auto"], "default": "auto"}),
    "order": ("sort models by", {"type": "string", "enum": list(ORDERS), "default": "cost"}),
    "q": ("only api_key_ids starting with this prefix", {"type": "string", "default": ""}),
    "limit": ("at most this many keys", {"type": "integer", "minimum": 1, "maximum": KEYS_MAX_LIMIT,
                                         "default": KEYS_DEFAULT_LIMIT}),
}


# Route groups mounted next to these (e.g. pipeline/budgets/api.py) add their paths and schemas to the served
# OpenAPI document through this list on the application: fn(document) -> None.
OPENAPI_EXTENSIONS = web.AppKey("openapi_extensions", list)


def openapi_document(extensions: Iterable[Callable[[dict], None]] = ()) -> dict:
    """Generated from ROUTES and the result dataclasses, so it cannot drift from what is served; each of
    ``extensions`` then adds the paths and schemas of a route group mounted on the same application."""
    _, schemas = msgspec.json.schema_components([r.response for r in ROUTES if r.response],
                                                ref_template="#/components/schemas/{name}")
    schemas["Error"] = {"type": "object", "required": ["error", "detail"],
                        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths = {}
    for route in ROUTES:
        if route.response is not None:
            content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.response.__name__}"}}}
        else:
            content = {"text/csv": {"schema": {"type": "string"}}} if route.name.endswith(".csv") else {
                "application/json": {"schema": {"type": "object"}}}
        responses: dict = {"200": {"description": route.summary, "content": content}}
        if not route.public:
            responses.update({"400": {"description": "bad parameters", **error},
                              "401": {"description": "missing or invalid token", **error},
                              "403": {"description": "the token may not read this scope", **error}})
        paths[f"{PREFIX_V1}/{route.name}"] = {"get": {
            "operationId": route.name.replace(".", "_").replace("-", "_"), "summary": route.summary,
            "security": [] if route.public else [{"bearer": []}],
            "parameters": [{"name": name, "in": "query", "required": name in ("from", "to"),
                            "description": _PARAMETERS[name][0], "schema": _PARAMETERS[name][1]}
                           for name in route.parameters],
            "responses": responses}}
    document = {"openapi": "3.1.0",
                "info": {"title": "meterline usage API", "version": "1"},
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
