"""The metering agent: Faust delivers messages, the Meter counts them, ClickHouse decides where to resume.

Faust's own offset commits are not trusted for exactness (see docs/exactly-once.md): after every
rebalance each assigned partition is committed back to its ClickHouse progress + 1 *before* Faust seeks
to committed offsets, so consumption always resumes right after the last offset whose effect is stored.
Messages are acked to Faust as soon as they are buffered; that is safe because of the repositioning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import faust
from faust.types import TP

from agents.batching import install_batching
from agents.buffers import PartitionBuffers
from pipeline.metering.deadletters import DeadLetterProducer
from pipeline.metering.failpoints import Failpoints
from pipeline.metering.meter import Meter
from pipeline.metering.sink import NO_PROGRESS, FencedError
from pipeline.metrics import PipelineMetrics

log = logging.getLogger(__name__)
# How often an idle partition (nothing new, consumer at the end of the log) records that it is fresh.
FRESHNESS_INTERVAL_S = 10.0
# Fetches handed to the agent and not yet buffered; the consumer's drain loop waits beyond (backpressure).
FETCHES_IN_FLIGHT = 4


class MeteringAgent:
    def __init__(self, app: faust.App, usage_topic: faust.TopicT, meter: Meter, dead_letters: DeadLetterProducer,
                 buffers: PartitionBuffers, metrics: PipelineMetrics, failpoints: Failpoints,
                 flush_interval_s: float) -> None:
        self._app = app
        self._topic = usage_topic
        self._topic_name = usage_topic.get_topic_name()
        self._meter = meter
        self._dead_letters = dead_letters
        self._failpoints = failpoints
        self._buffers = buffers
        self._metrics = metrics
        self._flush_interval_s = flush_interval_s
        # Held by a flush and by re-positioning: a rebalance never reads progress mid-flush.
        self._flush_lock = asyncio.Lock()
        self.positioned = False  # True once the first rebalance has placed every partition
        self._fresh_at: dict[int, float] = {}  # partition -> monotonic time its freshness was last recorded

    def install(self) -> None:
        """The agent reads whole fetches of the usage topic from an in-memory channel (agents/batching.py);
        the topic itself is subscribed through Faust's conductor as any agent's topic is."""
        fetches = self._app.channel(maxsize=FETCHES_IN_FLIGHT)
        install_batching(self._app, self._topic_name, fetches.put)
        self._app.topics.add(self._topic)
        self._app.agent(fetches, name="meter")(self._consume)
        self._app.task(self._flush_forever)
        self._app.timer(60.0)(self._expire_seen)
        self._app.on_partitions_revoked.connect(self._on_partitions_revoked)
        self._app.on_rebalance_complete.connect(self._on_rebalance_complete)

    async def _consume(self, stream: faust.StreamT) -> None:
        """One wake-up per fetch: its records go to the partition's buffer (backpressure when full)."""
        buffers = self._buffers
        async for fetched in stream:
            buffers.add_records(fetched.partition, fetched.records)
            if buffers.full:
                await buffers.wait_for_room()

    async def _flush_forever(self) -> None:
        while not self._app.should_stop:
            try:
                await asyncio.wait_for(self._buffers.flush_wanted.wait(), timeout=self._flush_interval_s)
            except asyncio.TimeoutError:
                pass
            try:
                await self.flush()
            except Exception as error:  # a permanent error: stop, never count around it
                log.exception("flush failed permanently; stopping the worker")
                await self._app.crash(error)
                return

    async def flush(self) -> None:
        """One flush cycle. Partitions are prepared one after the other (Python work, one at a time) while
        the writes of those already prepared run on the ClickHouse thread, in order: the inserts, which
        release the GIL, overlap the next partition's preparation."""
        async with self._flush_lock:
            taken = self._buffers.take()
            if taken:
                # Every taken message is acked to Faust (whose own offset commit may already have run) and
                # none is written: a crash here must re-read them from ClickHouse's progress.
                self._failpoints.hit("after_ack")
            writes = []
            for partition, messages in taken.items():
                prepared = await self._meter.prepare(partition, messages, self._reaches_log_end(partition, messages))
                if prepared is not None:
                    await self._dead_letters.send(partition, prepared.rollup.dead_letters)
                    writes.append(asyncio.create_task(self._write(prepared)))
            await asyncio.gather(*writes)
            await self._commit_progress(set(taken))
            await self._update_lag(flushed=set(taken))

    async def _write(self, prepared) -> None:
        try:
            await self._meter.write(prepared)
        except FencedError as fence:
            await self._after_fence(prepared.flush, fence)

    async def _after_fence(self, flush, fence: FencedError) -> None:
        """Another worker counted this partition up to ``fence.found`` (this worker was a zombie: paused past
        its session, or still flushing after losing the partition)."""
        if fence.found >= flush.last_offset:
            # Everything this flush held is counted; the buffer continues the log and the next flush
            # (with state reloaded from ClickHouse) skips what is counted.
            log.warning("partition %s: already counted up to %s by another worker", flush.partition, fence.found)
            return
        # Offsets fence.found+1 .. flush.last_offset were taken out of the buffer and nobody counted them:
        # re-reading them needs a clean re-positioning, which a restart gives (fail-stop, as Kafka Streams
        # does with a migrated task). Nothing is lost: ClickHouse says where to resume.
        log.error("partition %s was taken over by another worker at %s; stopping so that a restart resumes "
                  "it from ClickHouse", flush.partition, fence.found)
        await self._app.crash(fence)

    async def _on_partitions_revoked(self, sender, revoked, **kwargs) -> None:
        # Eager rebalancing revokes everything; whatever stays assigned is re-positioned afterwards. Stop
        # buffering at once, and let a flush in progress land before the partitions move: the next owner
        # then reads a progress no late write of this worker will contradict.
        self._buffers.accept(set())
        async with self._flush_lock:
            self._buffers.reset()

    async def _on_rebalance_complete(self, sender, **kwargs) -> None:
        async with self._flush_lock:
            self._buffers.reset()
            self._meter.forget()
            assigned = sorted(tp for tp in self._app.consumer.assignment() if tp.topic == self._topic_name)
            if not assigned:
                self.positioned = True
                return
            resume_at = await self._resume_offsets(assigned)
            # Faust has no public "commit these offsets"; its _commit sends exactly the mapping given, and
            # its recovery seeks to committed offsets right after this signal returns. That seek skips a
            # committed offset of 0 (aiokafka seeks only to offsets > 0), so every partition is also sought
            # here explicitly: a group that already read a topic must re-read it for an empty ClickHouse.
            await self._app.consumer._commit(resume_at)
            for tp, offset in resume_at.items():
                await self._app.consumer.seek(tp, offset)
            self._buffers.accept({tp.partition for tp in assigned})
            log.info("positioned partitions at their ClickHouse progress: %s",
                     {tp.partition: offset for tp, offset in resume_at.items()})
        self.positioned = True

    async def _resume_offsets(self, assigned: list[TP]) -> dict[TP, int]:
        earliest = await self._app.consumer.earliest_offsets(*assigned)
        resume_at = {}
        for tp in assigned:
            progress = await self._meter.progress(tp.partition)
            first_kept = earliest.get(tp) or 0
            if progress == NO_PROGRESS:
                resume_at[tp] = first_kept
            else:
                if progress + 1 < first_kept:
                    self._metrics.offset_gaps.inc()
                    log.error("partition %s: offsets %s..%s were deleted by retention before being counted",
                              tp.partition, progress + 1, first_kept - 1)
                resume_at[tp] = max(progress + 1, first_kept)
        return resume_at

    async def _commit_progress(self, partitions: set[int]) -> None:
        """Commits each flushed partition's ClickHouse progress + 1 as the group's Kafka offset. Nothing relies
        on it (every rebalance re-positions from ClickHouse); it keeps Kafka's own lag tools truthful, since the
        agent's fetches bypass Faust's per-message acks and commits."""
        committed = self._meter.committed()
        offsets = {TP(self._topic_name, p): committed[p] + 1 for p in partitions if committed.get(p, -1) >= 0}
        if not offsets:
            return
        try:
            await self._app.consumer._commit(offsets)
        except Exception as error:  # a lag display, never a reason to stop metering
            log.warning("committing progress to Kafka failed (%s); ClickHouse still holds it", error)

    def _reaches_log_end(self, partition: int, messages) -> bool:
        """Whether the taken messages end where the partition's log ended at the consumer's last fetch."""
        highwater = self._app.consumer.highwater(TP(self._topic_name, partition))
        return highwater is not None and messages[-1].offset >= highwater - 1

    async def _update_lag(self, flushed: set[int]) -> None:
        """Lag per partition; and for a partition at the end of its log with nothing new, a freshness mark
        every FRESHNESS_INTERVAL_S so that an idle topic does not read as stale."""
        consumer = self._app.consumer
        now = time.monotonic()
        for tp in consumer.assignment():
            if tp.topic != self._topic_name:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            progress = await self._meter.progress(tp.partition)
            lag = max(highwater - progress - 1, 0)
            self._metrics.consumer_lag.labels(str(tp.partition)).set(lag)
            if tp.partition in flushed:
                self._fresh_at[tp.partition] = now
            elif lag == 0 and now - self._fresh_at.get(tp.partition, 0.0) >= FRESHNESS_INTERVAL_S:
                await self._meter.mark_fresh(tp.partition)
                self._fresh_at[tp.partition] = now

    async def _expire_seen(self) -> None:
        async with self._flush_lock:
            self._meter.expire_seen()
