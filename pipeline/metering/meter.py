"""One partition's flush, from raw Kafka messages to a committed ClickHouse write.

The :class:`Meter` knows nothing of Faust: the worker hands it a partition number and the messages it
buffered. :meth:`Meter.prepare` returns what the flush will write and what must be dead-lettered first (the
caller sends those through :class:`~pipeline.metering.deadletters.DeadLetterProducer`); :meth:`Meter.write`
then writes it and returns the last offset now durable in ClickHouse (or raises :class:`FencedError`).
Python work runs on the meter's own CPU thread and ClickHouse calls on the ClickHouse thread, so one
partition's preparation overlaps another's insert and the event loop keeps serving Kafka.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, TypeVar

import numpy as np

from pipeline.clickhouse import is_transient
from pipeline.clock import HOUR_MS, now_ms
from pipeline.config import RollupSettings
from pipeline.metering.dedup import SeenRequests, request_id_hashes
from pipeline.metrics import PipelineMetrics
from pipeline.retry import Backoff, retry
from pipeline.metering.rollup import COUNTED, DUPLICATE, REJECTED, Outcome, RawMessage, RequestKey, Rollup, \
    RollupBuilder, TimeBounds
from pipeline.metering.sink import FencedError, FlushRange

log = logging.getLogger(__name__)
T = TypeVar("T")

class FlushStore(Protocol):
    """Where flushes are written: :class:`~pipeline.metering.sink.RollupWriter` on ClickHouse (the tests of
    the Meter's own logic use an in-memory store with the same fence and token semantics)."""

    def progress(self, partition: int) -> int: ...
    def load_seen(self, partition: int, progress: int, since_hour: int) -> SeenRequests: ...
    def confirm_seen(self, partition: int, progress: int, requests: list[RequestKey]) -> set[RequestKey]: ...
    def encode(self, flush: FlushRange, rollup: Rollup) -> Any: ...
    def write_request_ids(self, encoded: Any) -> None: ...
    def commit(self, flush: FlushRange, encoded: Any) -> bool: ...
    def record_freshness(self, partition: int, progress: int, counted_through_ms: int) -> bool: ...


class Runs(Protocol):
    """Runs blocking calls off the event loop (:class:`~pipeline.clickhouse.ClickHouse` on its thread)."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...


@dataclass
class PartitionState:
    progress: int  # last offset whose effect is committed in ClickHouse; NO_PROGRESS when none
    seen: SeenRequests


@dataclass(frozen=True)
class PreparedFlush:
    """A flush ready to write: its rollup (with the dead letters to send before the write) encoded."""

    state: PartitionState
    flush: FlushRange
    rollup: Rollup
    encoded: Any  # what the store's encode() made (EncodedFlush for ClickHouse)
    messages: int
    bounds: TimeBounds
    started: float


class Meter:
    def __init__(
        self,
        clickhouse: Runs,
        writer: FlushStore,
        builder: RollupBuilder,
        settings: RollupSettings,
        metrics: PipelineMetrics,
        backoff: Backoff = Backoff(),
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._ch = clickhouse
        self._writer = writer
        self._builder = builder
        self._settings = settings
        self._metrics = metrics
        self._backoff = backoff
        self._clock_ms = clock_ms
        self._states: dict[int, PartitionState] = {}
        self._cpu = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="meter-cpu")

    def forget(self, partitions: Sequence[int] | None = None) -> None:
        """Drops cached partition state (after a rebalance or a fence); it is reloaded from ClickHouse."""
        for partition in list(self._states) if partitions is None else partitions:
            self._states.pop(partition, None)

    def committed(self) -> dict[int, int]:
        """The progress of every partition this meter currently holds state for."""
        return {partition: state.progress for partition, state in self._states.items()}

    async def progress(self, partition: int) -> int:
        return (await self.state(partition)).progress

    async def state(self, partition: int) -> PartitionState:
        state = self._states.get(partition)
        if state is None:
            state = await self._retry(self._load, partition)
            self._states[partition] = state
        return state

    def _load(self, partition: int) -> PartitionState:
        progress = self._writer.progress(partition)
        since_hour = (self._clock_ms() - int(self._settings.dedup_horizon_s * 1000)) // HOUR_MS
        return PartitionState(progress, self._writer.load_seen(partition, progress, since_hour))

    async def prepare(self, partition: int, messages: Sequence[RawMessage],
                      caught_up: bool = False) -> PreparedFlush | None:
        """Everything before the writes: validate, dedup, price, group, encode. None when every message is
        already counted. The caller dead-letters ``prepared.rollup.dead_letters`` before the write.

        ``caught_up``: the messages reach the end of the partition's log as the consumer last saw it, so once
        they are written everything produced before now is counted (freshness); otherwise the flush is fresh
        up to its last message's Kafka timestamp."""
        started = time.perf_counter()
        now = self._clock_ms()
        state = await self.state(partition)
        fresh = [m for m in messages if m.offset > state.progress]
        if not fresh:
            return None
        bounds = self._bounds(now)
        draft = await self._on_cpu(self._builder.draft, fresh, bounds, state.seen)
        confirmed = set()
        if draft.maybe_seen:
            confirmed = await self._retry(self._writer.confirm_seen, partition, state.progress, draft.maybe_seen)
        rollup = draft.finish(confirmed)
        flush = FlushRange(partition, fresh[0].offset, fresh[-1].offset, state.progress,
                           now if caught_up else fresh[-1].timestamp_ms)
        encoded = await self._on_cpu(self._writer.encode, flush, rollup)
        return PreparedFlush(state, flush, rollup, encoded, len(fresh), bounds, started)

    async def write(self, prepared: PreparedFlush) -> int:
        """The writes of a prepared flush (request ids, then the atomic commit); the partition's progress."""
        flush, state = prepared.flush, prepared.state
        write_started = time.perf_counter()
        await self._retry(self._writer.write_request_ids, prepared.encoded)
        try:
            await self._retry(self._writer.commit, flush, prepared.encoded)
        except FencedError:
            self._metrics.flushes_fenced.inc()
            self.forget([flush.partition])
            raise
        self._metrics.clickhouse_write_seconds.observe(time.perf_counter() - write_started)
        state.progress = flush.last_offset
        rollup = prepared.rollup
        if rollup.new_requests:
            hashes = await self._on_cpu(request_id_hashes, [request_id for _, request_id in rollup.new_requests])
            state.seen.add(hashes, np.asarray(rollup.new_request_hours, dtype=np.uint32))
        self._record(rollup, prepared.messages, prepared.bounds, state)
        self._metrics.flush_seconds.observe(time.perf_counter() - prepared.started)
        return state.progress

    async def mark_fresh(self, partition: int) -> None:
        """Records that ``partition`` has nothing left to count as of now (its consumer is at the end of the
        log): an idle partition must not make the answers look stale. Skipped when another worker has moved
        the partition on (its state is then reloaded)."""
        state = await self.state(partition)
        if not await self._retry(self._writer.record_freshness, partition, state.progress, self._clock_ms()):
            self.forget([partition])

    async def _on_cpu(self, fn: Callable[..., T], *args) -> T:
        """Python work of a flush runs on its own thread, so one partition's work overlaps another's
        ClickHouse insert (which releases the GIL) and the event loop keeps fetching."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu, lambda: fn(*args))

    def expire_seen(self) -> None:
        """Forgets request ids older than the dedup horizon (ClickHouse still confirms older ones)."""
        min_hour = (self._clock_ms() - int(self._settings.dedup_horizon_s * 1000)) // HOUR_MS
        for state in self._states.values():
            state.seen.expire(min_hour)

    def _bounds(self, now_ms: int) -> TimeBounds:
        s = self._settings
        return TimeBounds(now_ms, int(s.max_lateness_s * 1000), int(s.max_future_skew_s * 1000),
                          int(s.dedup_horizon_s * 1000))

    def _record(self, rollup: Rollup, n_messages: int, bounds: TimeBounds, state: PartitionState) -> None:
        m = self._metrics
        m.flushes.inc()
        m.messages_consumed.inc(n_messages)
        m.events_consumed.inc(sum(rollup.outcomes.values()))
        m.events_counted.inc(rollup.outcomes[Outcome(COUNTED)])
        m.events_duplicate.inc(rollup.outcomes[Outcome(DUPLICATE)])
        for outcome, n in rollup.outcomes.items():
            if outcome.outcome == REJECTED:
                m.events_rejected.labels(outcome.reason).inc(n)
        current_hour = bounds.now_ms // HOUR_MS
        m.events_late.inc(sum(1 for hour in rollup.new_request_hours if hour < current_hour))
        m.events_unpriced.inc(rollup.unpriced_requests)
        m.rollup_rows_written.inc(len(rollup.groups))
        m.dedup_entries.set(sum(len(s.seen) for s in self._states.values()))
        m.dedup_bytes.set(sum(s.seen.nbytes for s in self._states.values()))

    async def _retry(self, fn: Callable[..., T], *args) -> T:
        """Runs a ClickHouse call until it succeeds: an unwritten flush is never skipped or committed past.
        A permanent error (a bug, a schema that lacks a migration) is raised instead: the worker stops."""
        def failed(error: Exception, attempt: int, delay_s: float) -> None:
            self._metrics.clickhouse_errors.inc()
            log.warning("ClickHouse call %s failed (%s); retrying in %.1fs", fn.__name__, error, delay_s)

        return await retry(lambda: self._ch.run(fn, *args), self._backoff, retryable=is_transient, on_failure=failed)
