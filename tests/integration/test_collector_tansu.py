"""The collector on the quick start's embedded broker (Tansu): with the idempotent producer switched off it
works; left on, it refuses to start with one clear error that names the setting."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.devtools.brokers import TansuBroker
from pipeline.kafka import create_topics
from pipeline.config import load_settings
from pipeline.ingest.server import CollectorService, CollectorStartError

pytestmark = pytest.mark.kafka
TOKEN = "tansu-test-token"
TOPIC = "meterline.usage.v1"


def settings_for(bootstrap: str, **env: str):
    return load_settings({"METERLINE_KAFKA_BROKERS": bootstrap, "METERLINE_INGEST_TOKENS": TOKEN,
                          "METERLINE_INGEST_PORT": "0", "METERLINE_USAGE_TOPIC": TOPIC, **env})


async def test_idempotent_producer_on_tansu_is_a_clear_start_error(tmp_path):
    with TansuBroker(tmp_path) as broker:
        service = CollectorService(settings_for(broker.bootstrap))
        try:
            with pytest.raises(CollectorStartError, match="METERLINE_INGEST_IDEMPOTENCE=false"):
                await service.start()
        finally:
            await service.stop()


async def test_collector_without_idempotence_delivers_to_tansu(tmp_path):
    with TansuBroker(tmp_path) as broker:
        await create_topics(broker.bootstrap, {TOPIC: 4})
        service = CollectorService(settings_for(broker.bootstrap, METERLINE_INGEST_IDEMPOTENCE="false"))
        await service.start()
        now_ms = int(time.time() * 1000)
        events = [{"request_id": f"r{i}", "api_key_id": f"key-{i % 3}", "model": "gpt-4o", "timestamp": now_ms - i,
                   "input_tokens": i, "output_tokens": 1} for i in range(30)]
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{service.port}/v1/events", json=events,
                                        headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                    assert response.status == 200
                    assert await response.json() == {"accepted": 30, "rejected": []}
        finally:
            await service.stop()
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                    group_id="read-back")
        await consumer.start()
        try:
            received, deadline = [], time.monotonic() + 60
            while len(received) < 30 and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=5000)).values():
                    for record in records:
                        batch = json.loads(record.value)
                        assert {e["api_key_id"].encode() for e in batch} == {record.key}
                        received += [e["request_id"] for e in batch]
        finally:
            await consumer.stop()
        assert sorted(received) == sorted(e["request_id"] for e in events)
