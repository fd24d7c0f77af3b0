"""Feeding the metering agent whole fetches instead of single messages.

Faust hands every Kafka message to its per-message machinery: the consumer's drain loop awaits
``wait_first(callback(message), suspend_flow.wait())`` (two tasks and an ``asyncio.wait`` per message), the
conductor routes it to the topic's queue, the stream wraps it in an Event, tracks and acks it. That costs
about 150 µs per message whatever the agent does, so any Faust agent caps near 6-7k messages/s
(bench/RESULTS.md). The metering agent needs none of it: ClickHouse, not Faust's acks, decides where
consumption resumes (docs/exactly-once.md), and the agent only appends raw records to its buffer.

So this consumer, a subclass of Faust's aiokafka consumer, routes each fetched batch of the usage topic
(one partition's records of one ``getmany``) to the metering agent as ONE item of an in-memory Faust channel;
records of any other topic keep Faust's own path. Everything else stays Faust's: group membership,
assignment and rebalance callbacks, fetching, flow control (a paused or rebalancing consumer drops the
fetch, exactly as Faust's ``getmany`` does), the agent, its supervisor and the worker's lifecycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class FetchedRecords(NamedTuple):
    """One partition's records of one fetch (aiokafka ``ConsumerRecord``s, in offset order)."""

    partition: int
    records: list[Any]


Deliver = Callable[[FetchedRecords], Awaitable[None]]


class BatchingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering ``batch_topic``'s fetches whole to ``deliver``."""

    batch_topic: str = ""
    deliver: Deliver | None = None

    async def _drain_messages(self, fetcher: Any) -> None:  # the loop of faust.transport.consumer.Consumer
        callback, deliver, batch_topic = self.callback, type(self).deliver, self.batch_topic
        consumer_stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(timeout=1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:  # paused for a rebalance: as Faust's getmany, drop the fetch and re-seek
                    await self.perform_seek()
                    continue
                generation = self.app.consumer_generation_id
                for tp, tp_records in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic == batch_topic:
                        # Raced against a rebalance's stop_flow, as Faust's own loop races each message: a put
                        # blocked on a full channel must give way, or the fetcher is cancelled mid-put and
                        # Faust's restart-on-rebalance path crashes the worker. The fetch is dropped; the
                        # partitions are repositioned at their ClickHouse progress on assignment.
                        await self.wait_first(deliver(FetchedRecords(tp.partition, tp_records)),
                                              self.suspend_flow.wait())
                    else:
                        for record in tp_records:
                            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise


def install_batching(app: faust.App, topic_name: str, deliver: Deliver) -> None:
    """Make ``app``'s consumer deliver ``topic_name``'s fetches to ``deliver``. Call before the app starts."""
    consumer = type("MeteringConsumer", (BatchingConsumer,), {"batch_topic": topic_name,
                                                               "deliver": staticmethod(deliver)})
    transport = type("MeteringTransport", (faust_aiokafka.Transport,), {"Consumer": consumer})
    app.transport = transport(app.conf.broker_consumer, app)
