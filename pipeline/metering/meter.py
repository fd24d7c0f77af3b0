"""One partition's flush, from raw Kafka messages to a committed ClickHouse write.

The :class:`Meter` knows nothing of Faust: the worker hands it a partition number and the messages it
buffered, and gets back the last offset now durable in ClickHouse (or a :class:`FencedError`).
CPU work and ClickHouse calls run on the ClickHouse thread so the event loop keeps serving Kafka.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence, TypeVar

import numpy as np

from pipeline.clickhouse import ClickHouse, is_transient
from pipeline.clock import HOUR_MS, now_ms
from pipeline.config import RollupSettings
from pipeline.metering.dedup import SeenRequests, request_id_hashes
from pipeline.metering.failpoints import Failpoints
from pipeline.metrics import PipelineMetrics
from pipeline.metering.rollup import COUNTED, DUPLICATE, REJECTED, REQUESTS, UNPRICED, VERSION, DeadLetter, \
    RawMessage, Rollup, RollupBuilder, TimeBounds
from pipeline.metering.sink import EncodedFlush, FencedError, FlushRange, RollupWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

DeadLetterSender = Callable[[int, Sequence[DeadLetter]], Awaitable[None]]


@dataclass
class PartitionState:
    progress: int  # last offset whose effect is committed in ClickHouse; NO_PROGRESS when none
    seen: SeenRequests


@dataclass(frozen=True)
class PreparedFlush:
    state: PartitionState
    flush: FlushRange
    rollup: Rollup
    encoded: EncodedFlush
    messages: int
    bounds: TimeBounds
    started: float


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.2
    max_s: float = 10.0


class Meter:
    def __init__(
        self,
        clickhouse: ClickHouse,
        writer: RollupWriter,
        builder: RollupBuilder,
        settings: RollupSettings,
        send_dead_letters: DeadLetterSender,
        metrics: PipelineMetrics,
        failpoints: Failpoints,
        backoff: Backoff = Backoff(),
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self._ch = clickhouse
        self._writer = writer
        self._builder = builder
        self._settings = settings
        self._send_dead_letters = send_dead_letters
        self._metrics = metrics
        self._failpoints = failpoints
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

    async def prepare(self, partition: int, messages: Sequence[RawMessage]) -> PreparedFlush | None:
        """Everything before the writes: validate, dedup, price, group, dead-letter, encode. None when
        every message is already counted."""
        started = time.perf_counter()
        state = await self.state(partition)
        fresh = [m for m in messages if m.offset > state.progress]
        if not fresh:
            return None
        bounds = self._bounds()
        draft = await self._on_cpu(self._builder.draft, fresh, bounds, state.seen)
        confirmed = set()
        if draft.maybe_seen:
            confirmed = await self._retry(self._writer.confirm_seen, partition, state.progress, draft.maybe_seen)
        rollup = draft.finish(confirmed)
        if rollup.dead_letters:
            await self._retry_async(self._send_dead_letters, partition, rollup.dead_letters)
            self._failpoints.hit("after_dead_letters")
        flush = FlushRange(partition, fresh[0].offset, fresh[-1].offset, state.progress)
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
        if rollup.new_request_ids:
            hashes = await self._on_cpu(request_id_hashes, rollup.new_request_ids)
            state.seen.add(hashes, np.asarray(rollup.new_request_hours, dtype=np.uint32))
        self._record(rollup, prepared.messages, prepared.bounds, state)
        self._metrics.flush_seconds.observe(time.perf_counter() - prepared.started)
        return state.progress

    async def _on_cpu(self, fn: Callable[..., T], *args) -> T:
        """Python work of a flush runs on its own thread, so one partition's work overlaps another's
        ClickHouse insert (which releases the GIL) and the event loop keeps fetching."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu, lambda: fn(*args))

    def expire_seen(self) -> None:
        """Forgets request ids older than the dedup horizon (ClickHouse still confirms older ones)."""
        min_hour = (self._clock_ms() - int(self._settings.dedup_horizon_s * 1000)) // HOUR_MS
        for state in self._states.values():
            state.seen.expire(min_hour)

    def _bounds(self) -> TimeBounds:
        s = self._settings
        return TimeBounds(self._clock_ms(), int(s.max_lateness_s * 1000), int(s.max_future_skew_s * 1000),
                          int(s.dedup_horizon_s * 1000))

    def _record(self, rollup, n_messages: int, bounds: TimeBounds, state: PartitionState) -> None:
        m = self._metrics
        m.flushes.inc()
        m.messages_consumed.inc(n_messages)
        m.events_consumed.inc(sum(rollup.outcomes.values()))
        m.events_counted.inc(rollup.outcomes[(COUNTED, "")])
        m.events_duplicate.inc(rollup.outcomes[(DUPLICATE, "")])
        for (outcome, reason), n in rollup.outcomes.items():
            if outcome == REJECTED:
                m.events_rejected.labels(reason).inc(n)
        current_hour = bounds.now_ms // HOUR_MS
        m.events_late.inc(sum(1 for hour in rollup.new_request_hours if hour < current_hour))
        m.events_unpriced.inc(sum(c[REQUESTS] for g, c in rollup.groups.items() if g[VERSION] == UNPRICED))
        m.rollup_rows_written.inc(len(rollup.groups))
        m.dedup_entries.set(sum(len(s.seen) for s in self._states.values()))
        m.dedup_bytes.set(sum(s.seen.nbytes for s in self._states.values()))

    async def _retry(self, fn: Callable[..., T], *args) -> T:
        """Runs a ClickHouse call until it succeeds: an unwritten flush is never skipped or committed past.
        A permanent error (a bug, a schema that lacks a migration) is raised instead: the worker stops."""
        delay = self._backoff.initial_s
        while True:
            try:
                return await self._ch.run(fn, *args)
            except Exception as error:
                if not is_transient(error):
                    raise
                self._metrics.clickhouse_errors.inc()
                log.warning("ClickHouse call %s failed (%s); retrying in %.1fs", fn.__name__, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff.max_s)

    async def _retry_async(self, fn: Callable[..., Awaitable[T]], *args) -> T:
        delay = self._backoff.initial_s
        while True:
            try:
                return await fn(*args)
            except Exception as error:
                self._metrics.dead_letter_errors.inc()
                log.warning("dead-letter send failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff.max_s)
