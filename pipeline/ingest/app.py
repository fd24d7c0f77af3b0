"""The collector's HTTP application: authenticate, map, validate, queue for Kafka, answer after the ack.

A 2xx means every accepted event of the request is acknowledged by Kafka (acks=all): durable. Any Kafka
trouble (a send error, or no acknowledgement within the produce timeout) answers 503 with Retry-After, and
the client retries the whole request; events of it that did land are recognised by their request_id and
counted once by the worker. Nothing is ever answered 2xx before its acknowledgement.

Bad input is answered 4xx with a reason (pipeline/ingest/body.py reads the body, adapters are total). Should
a handler still raise, the request is answered a JSON 500, counted in ``meterline_ingest_requests_total``,
and logged by exception class and code location only: neither the body nor the exception's message (which
could quote it) nor any token reaches the log.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import traceback
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from pipeline.config import IngestSettings
from pipeline.ingest.adapters.base import BodyError, Problem
from pipeline.ingest.batcher import KeyedBatcher
from pipeline.ingest.body import BodyReader, BodyRefused
from pipeline.ingest.metrics import IngestMetrics
from pipeline.ingest.routes import JSON, Route, build_routes
from pipeline.ingest.validation import EventValidator, Verdict
from pipeline.metrics import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1
# Past this many events waiting for Kafka, new requests are turned away (503) instead of queueing memory.
MAX_UNACKED_EVENTS = 1_000_000
_encode = msgspec.json.Encoder().encode


class Answer(Exception):
    """A response (status, JSON body, headers); raised to end a request early."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class Collector:
    def __init__(self, settings: IngestSettings, validator: EventValidator, batcher: KeyedBatcher,
                 metrics: IngestMetrics) -> None:
        self._settings = settings
        self._validator = validator
        self._batcher = batcher
        self._metrics = metrics
        self._tokens = [token.encode() for token in settings.tokens]
        self._bodies = BodyReader(settings.max_body_bytes)
        self._kafka_ok = True  # how the last produce went; reported by /healthz

    def application(self) -> web.Application:
        # The body is decompressed by BodyReader, under the size cap, not by aiohttp (see body.py).
        app = web.Application(client_max_size=self._settings.max_body_bytes,
                              handler_args={"auto_decompress": False})
        for route in build_routes():
            app.router.add_post(route.path, self._handler(route))
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics_page)
        return app

    def _handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            # Answered inside the except clauses: keeping a raised answer in a local would make a reference
            # cycle (its traceback holds this frame) that pins a refused body's memory until the next GC.
            try:
                answer = await self._process(request, route)
            except Answer as early:
                return self._respond(route, early)
            except Exception as error:  # noqa: BLE001 - a bug of ours: answered, counted, logged without data
                log.error("answering 500 on %s: %s at %s", route.path, type(error).__name__, _where(error))
                return self._respond(route, Answer(500, _error(
                    "internal_error", f"the collector failed ({type(error).__name__}); retry the request later")))
            return self._respond(route, answer)
        return handle

    def _respond(self, route: Route, answer: Answer) -> web.Response:
        self._metrics.requests.labels(route.name, f"{answer.status // 100}xx").inc()
        return web.Response(status=answer.status, body=_encode(answer.body), headers=answer.headers,
                            content_type="application/json")

    async def _process(self, request: web.Request, route: Route) -> Answer:
        self._authenticate(request)
        # Without a Content-Type header aiohttp reports application/octet-stream; JSON is meant.
        content_type = request.content_type if "Content-Type" in request.headers else JSON
        adapter = route.adapter_for(content_type)
        if adapter is None:
            raise Answer(415, _error("unsupported_media_type", f"{route.path} does not read {content_type[:100]}"))
        if request.charset is not None and request.charset.lower() not in ("utf-8", "utf8"):
            raise Answer(415, _error("unsupported_media_type", "JSON bodies are read as UTF-8 only (RFC 8259), "
                                                               f"not {request.charset[:40]}"))
        try:
            body = await self._bodies.read(request)
        except BodyRefused as refused:
            raise Answer(refused.status, _error(refused.error, refused.detail)) from None
        try:
            mapped = adapter.map(body, content_type)
        except BodyError as error:
            raise Answer(400, _error(error.reason, error.detail)) from None
        verdict = self._validator.judge(mapped)
        self._count_rejections(route, verdict.rejected, mapped.skipped)
        if verdict.rejected and request.query.get("atomic", "").lower() in ("true", "1"):
            raise Answer(400, _summary(0, verdict.rejected))
        await self._produce(verdict)
        self._metrics.events_accepted.labels(route.name).inc(len(verdict.accepted))
        if route.otlp:
            return Answer(200, _otlp_summary(verdict.rejected))
        return Answer(200, _summary(len(verdict.accepted), verdict.rejected))

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # Header bytes that are not UTF-8 arrive as surrogate escapes; they match no token.
        given = token.strip().encode("utf-8", "surrogateescape")
        # Every configured token is compared, in constant time, so timing tells nothing about any of them.
        matches = [hmac.compare_digest(given, known) for known in self._tokens]
        if scheme.lower() != "bearer" or not any(matches):
            raise Answer(401, _error("unauthorized", "an ingest token is required: Authorization: Bearer <token>"),
                         {"WWW-Authenticate": 'Bearer realm="meterline-ingest"'})

    async def _produce(self, verdict: Verdict) -> None:
        """Returns once Kafka has acknowledged every accepted event; raises a 503 Answer otherwise."""
        if not verdict.accepted:
            return
        if self._batcher.unacked + len(verdict.accepted) > MAX_UNACKED_EVENTS:
            raise self._unavailable("overloaded", "too many events are waiting for Kafka")
        started = time.perf_counter()
        add = self._batcher.add
        waiting = {add(key, event) for key, event in verdict.accepted}
        self._metrics.unacked_events.set(self._batcher.unacked)
        # asyncio.wait never cancels what it waits for: other requests share these messages.
        done, pending = await asyncio.wait(waiting, timeout=self._settings.produce_timeout_s)
        failed = [future.exception() for future in done if future.exception() is not None]
        self._kafka_ok = not pending and not failed
        if pending or failed:
            reason = "kafka did not acknowledge in time" if pending else f"kafka refused: {failed[0]!r}"
            log.warning("answering 503: %s", reason)
            raise self._unavailable("kafka_unavailable", reason)
        self._metrics.produce_seconds.observe(time.perf_counter() - started)

    def _unavailable(self, error: str, detail: str) -> Answer:
        self._metrics.produce_errors.inc()
        return Answer(503, _error(error, detail + "; retry the whole request (its events are deduplicated)"),
                      {"Retry-After": str(RETRY_AFTER_S)})

    def _count_rejections(self, route: Route, rejected: list[Problem], skipped: int) -> None:
        for problem in rejected:
            self._metrics.events_rejected.labels(route.name, problem.reason).inc()
        if skipped:
            self._metrics.records_skipped.labels(route.name).inc(skipped)

    async def _health(self, request: web.Request) -> web.Response:
        # Serving at all means the producer is started; Kafka's state is reported, not judged: taking the
        # collector out of rotation while Kafka is down would not make Kafka come back sooner.
        return web.json_response({"status": "ok", "kafka": "ok" if self._kafka_ok else "failing"})

    async def _metrics_page(self, request: web.Request) -> web.Response:
        self._metrics.unacked_events.set(self._batcher.unacked)
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _where(error: BaseException) -> str:
    """Where ``error`` was raised, as ``file:line in function`` frames: no values, no message."""
    frames = traceback.extract_tb(error.__traceback__)[-4:]
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in reversed(frames))


def _error(error: str, detail: str) -> dict:
    return {"error": error, "detail": detail}


def _summary(accepted: int, rejected: list[Problem]) -> dict:
    return {"accepted": accepted, "rejected": [{"index": p.index, "reason": p.reason, "detail": p.detail}
                                             for p in rejected]}


def _otlp_summary(rejected: list[Problem]) -> dict:
    """OTLP/HTTP's ExportTraceServiceResponse: a partial success names the rejected spans."""
    if not rejected:
        return {}
    listed = "; ".join(f"span {p.index}: {p.reason}: {p.detail}" for p in rejected[:20])
    return {"partialSuccess": {"rejectedSpans": len(rejected), "errorMessage": listed}}
