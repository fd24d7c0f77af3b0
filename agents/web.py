"""The worker's HTTP server: Prometheus metrics, health, and whatever routes the caller mounts."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from mode import Service

from pipeline.metrics import CONTENT_TYPE_LATEST, PipelineMetrics

log = logging.getLogger(__name__)


def base_app(metrics: PipelineMetrics, is_ready: Callable[[], bool]) -> web.Application:
    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(request: web.Request) -> web.Response:
        ready = is_ready()
        return web.json_response({"status": "ok" if ready else "starting"}, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    return app


class WebServer(Service):
    """Runs an aiohttp application for as long as the Faust worker runs."""

    def __init__(self, app: web.Application, host: str, port: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("HTTP server on http://%s:%s (/metrics, /healthz)", self._host, self._port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
