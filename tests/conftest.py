"""Fixtures shared by the whole suite.

Tests that need Kafka are marked ``@pytest.mark.kafka`` and share ONE real Apache Kafka broker per
session (deploy/kafka/kafka.sh). A broker that cannot start errors those tests: nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from uuid import uuid4

import pytest

from pipeline.devtools.brokers import ApacheKafka
from pipeline.kafka import create_topics


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """The session's Apache Kafka broker; its state and broker.log are kept in pytest's tmp dir."""
    with ApacheKafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: ApacheKafka) -> str:
    """Bootstrap address (``127.0.0.1:PORT``) of the session's Apache Kafka broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    """Factory for fresh topics on the session broker, unique to the calling test.

    Async: ``name = await new_topic(partitions=4)``. When it returns, every partition has a leader.
    """

    async def create(partitions: int = 1) -> str:
        name = f"t-{uuid4().hex[:10]}"
        await create_topics(kafka_bootstrap, {name: partitions})
        return name

    return create
