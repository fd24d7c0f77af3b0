"""Running the collector: Kafka producer, batcher and HTTP server, started and stopped in order.

Stopping first closes the listener and lets requests in flight finish (they wait for their acks), then
flushes the batcher and stops the producer, which waits for every outstanding delivery.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from pipeline.config import ConfigError, Settings
from pipeline.contract import ContractDecoder
from pipeline.ingest.app import Collector
from pipeline.ingest.batcher import KeyedBatcher
from pipeline.ingest.metrics import IngestMetrics
from pipeline.ingest.producer import BatchSender, new_producer
from pipeline.ingest.validation import EventValidator, TimeWindow
from pipeline.kafka import create_topics

log = logging.getLogger(__name__)
# Requests still waiting for acks get this long to finish when the collector stops.
SHUTDOWN_GRACE_S = 30.0


class CollectorStartError(RuntimeError):
    """The collector could not start (Kafka unreachable or refusing its producer, port taken); says why."""


class CollectorService:
    """The whole collector in the current event loop; ``port`` is known once started."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None,
                 create_topic: bool = True) -> None:
        self._settings = settings
        self._metrics = IngestMetrics(registry or CollectorRegistry())
        self._create_topic = create_topic
        self._producer = None
        self._batcher: KeyedBatcher | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def metrics(self) -> IngestMetrics:
        return self._metrics

    async def start(self) -> None:
        kafka, ingest = self._settings.kafka, self._settings.ingest
        if self._create_topic:  # as the worker does: idempotent, so either may start first
            try:
                await create_topics(kafka.brokers, {kafka.usage_topic: kafka.partitions}, kafka.replication_factor)
            except (KafkaError, OSError, asyncio.TimeoutError) as error:
                raise CollectorStartError(f"cannot create or read topic {kafka.usage_topic} at {kafka.brokers}: "
                                          f"{error!r}") from error
        # The producer's own timeout outlasts the request's: a request answers 503 first, while Kafka may
        # still deliver (the client's retry is then a duplicate, which the worker drops).
        self._producer = new_producer(kafka.brokers, request_timeout_s=max(30.0, 3 * ingest.produce_timeout_s),
                                      idempotence=ingest.idempotence)
        try:
            await self._producer.start()
        except KafkaError as error:
            raise CollectorStartError(_producer_problem(kafka.brokers, ingest.idempotence, error)) from error
        sender = BatchSender(self._producer, kafka.usage_topic)
        self._batcher = KeyedBatcher(sender.send, self._settings.contract.max_batch_events, ingest.linger_s,
                                     on_message=self._metrics.message_events.observe)
        # The worker's own time bounds: an event the worker would dead-letter is rejected here instead.
        validator = EventValidator(ContractDecoder(self._settings.contract.max_batch_events),
                                   TimeWindow.of(self._settings.rollup))
        collector = Collector(ingest, validator, self._batcher, self._metrics)
        self._runner = web.AppRunner(collector.application(), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, ingest.host, ingest.port)
        try:
            await site.start()
        except OSError as error:
            raise CollectorStartError(f"the collector cannot listen on {ingest.host}:{ingest.port} ({error.strerror}); "
                                      "choose another METERLINE_INGEST_PORT") from error
        self.port = self._runner.addresses[0][1]
        log.info("collector on http://%s:%s -> %s/%s", ingest.host, self.port, kafka.brokers, kafka.usage_topic)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._batcher is not None:
            await self._batcher.close()
        if self._producer is not None:
            await self._producer.stop()


def _producer_problem(brokers: str, idempotence: bool, error: KafkaError) -> str:
    problem = f"the Kafka producer could not start against {brokers}: {error!r}"
    if idempotence:
        # aiokafka reports a broker refusing InitProducerId (e.g. Tansu) as UnknownError at start.
        problem += ("; if this broker does not support idempotent producers (InitProducerId), set "
                    "METERLINE_INGEST_IDEMPOTENCE=false (docs/ingest.md says what that weakens)")
    return problem


def run(settings: Settings) -> int:
    """``meterline collect``: serve until SIGINT or SIGTERM. Returns 1 (with the reason on the log) when it
    cannot start."""
    if not settings.ingest.tokens:
        raise ConfigError("METERLINE_INGEST_TOKENS: set at least one ingest token (comma-separated); "
                          "the collector does not accept unauthenticated events")
    try:
        asyncio.run(_serve(settings))
    except CollectorStartError as error:
        log.error("%s", error)
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = CollectorService(settings)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    try:
        await stop.wait()
    finally:
        log.info("stopping the collector")
        await service.stop()
