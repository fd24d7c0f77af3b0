"""Kafka administration the production processes need: creating meterline's topics before they are used.

The worker and the collector create the usage and dead-letter topics at start-up (idempotently), so a fresh
cluster needs no manual step. Local brokers for tests and the quick start are in
:mod:`pipeline.devtools.brokers`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code


class TopicError(KafkaError):
    """Topics could not be created or got no partition leaders in time."""


async def create_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    replication: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create the topics (name -> partition count) that do not exist yet, then wait until every
    partition has a leader, so that producing to them at once succeeds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(name, count, replication) for name, count in partitions.items()],
            timeout_ms=int(timeout * 1000),
        )
        for topic, code, *_ in response.topic_errors:
            error = for_code(code)
            if code != 0 and error is not TopicAlreadyExistsError:
                raise error(f"creating topic {topic!r}")
        await _wait_for_leaders(admin, list(partitions), time.monotonic() + timeout)
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topics: list[str], deadline: float) -> None:
    while True:
        described = await admin.describe_topics(topics)
        if all(t["error_code"] == 0 and t["partitions"] for t in described) and all(
            p["leader"] >= 0 for t in described for p in t["partitions"]
        ):
            return
        if time.monotonic() >= deadline:
            raise TopicError(f"topics {topics} still have partitions without a leader")
        await asyncio.sleep(0.1)
