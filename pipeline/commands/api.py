"""``meterline api``: the usage HTTP API (docs/usage-queries.md) with the budget routes (docs/alerts.md) as a service of its own, reading a ClickHouse
server (``METERLINE_CLICKHOUSE_URL=http://user:pass@host:8123/db``), so it scales apart from the workers.

Serves ``/api/v1/...`` and ``/healthz`` (200 while ClickHouse answers, else 503) on ``METERLINE_WEB_HOST`` /
``METERLINE_WEB_PORT``. An embedded ``chdb://`` store works too, but only while no worker holds it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from pipeline.budgets.api import BudgetService, add_budget_routes
from pipeline.usage.api import add_usage_page, create_api_app
from pipeline.clickhouse import ClickHouse, EmbeddedStoreBusy
from pipeline.commands.local import open_store
from pipeline.config import Settings, load_settings
from pipeline.usage.query import UsageQueries

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    api = subparsers.add_parser("api", help="serve the usage HTTP API (/api/v1/..., /healthz) from ClickHouse")
    api.set_defaults(handler=run_api)


def build_app(settings: Settings, clickhouse: ClickHouse) -> web.Application:
    queries = UsageQueries(clickhouse.client, settings.kafka.usage_topic, int(settings.rollup.max_lateness_s))
    app = create_api_app(queries, clickhouse.run, settings.api, trend_days=settings.budgets.trend_days)
    add_budget_routes(app, BudgetService.over(clickhouse.client, settings.budgets.trend_days), clickhouse.run,
                      settings.api)
    add_usage_page(app)

    async def health(request: web.Request) -> web.Response:
        try:
            await clickhouse.run(clickhouse.client.command, "SELECT 1")
        except Exception as error:  # any failure means "not able to answer": report it, do not crash
            log.warning("health check: ClickHouse did not answer: %s", error)
            return web.json_response({"status": "clickhouse unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def close_clickhouse(app: web.Application) -> None:
        clickhouse.close()

    app.router.add_get("/healthz", health)
    app.on_cleanup.append(close_clickhouse)
    return app


def run_api(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.api.admin_token and not settings.api.token_secret:
        log.warning("neither METERLINE_API_ADMIN_TOKEN nor METERLINE_API_TOKEN_SECRET is set: every request "
                    "will be refused (401)")
    try:
        clickhouse = open_store(settings.clickhouse.url)
    except EmbeddedStoreBusy as busy:
        print(f"meterline: {busy}", file=sys.stderr)
        return 1
    log.info("usage API on http://%s:%s/api/v1/ (ClickHouse %s)", settings.web.host, settings.web.port,
             "embedded" if settings.clickhouse.embedded else "server")
    # run_app stops cleanly on SIGINT and SIGTERM (docker stop), running on_cleanup (closes ClickHouse).
    web.run_app(build_app(settings, clickhouse), host=settings.web.host, port=settings.web.port,
                access_log=None, print=None)
    return 0
