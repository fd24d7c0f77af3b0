"""Request identity end to end (collector -> Kafka -> worker -> ClickHouse): every distinct request counts, a
retry counts once, in every format; and every answer says how fresh it is, also when the worker stops.

- two keys (tenants) on one partition reusing one request id both count;
- an upstream that reuses an OpenAI response id (`chatcmpl-424`) for two different requests: 2 requests, 300/30;
- the whole set of payloads (contract events, OpenAI, Anthropic, LiteLLM, OTLP, CloudEvents) posted again, as a
  gateway retry: nothing changes but the duplicate count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka.partitioner import murmur2

from pipeline.clickhouse import connect
from pipeline.usage.query import UsageQueries
from pipeline.usage.ranges import parse_request
from support.collector import TOKEN, CollectorProcess, topic_contents
from support.processes import ChdbHttpProcess, WorkerProcess, wait_until_counted

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "schemas" / "examples" / "quickstart"
ROUTES = {"events": "/v1/events", "openai": "/v1/openai", "anthropic": "/v1/anthropic", "litellm": "/v1/litellm",
          "otlp": "/v1/otlp/v1/traces"}
PARTITIONS = 2


def same_partition_keys() -> tuple[str, str]:
    """Two api keys that Kafka's default partitioner puts on one partition."""
    first = "tenant-a"
    target = (murmur2(first.encode()) & 0x7FFFFFFF) % PARTITIONS
    second = next(f"tenant-{i}" for i in range(1000) if (murmur2(f"tenant-{i}".encode()) & 0x7FFFFFFF)
                  % PARTITIONS == target and f"tenant-{i}" != first)
    return first, second


def bodies(now_s: int) -> dict[str, bytes]:
    """One payload per route, stamped now, plus a CloudEvent and the identity cases."""
    out = {name: (QUICKSTART / f"{name}.json").read_bytes().replace(b"1111111111", str(now_s).encode())
           for name in ROUTES}
    a, b = same_partition_keys()
    out["tenants"] = json.dumps([
        {"request_id": "shared-1", "api_key_id": a, "model": "gpt-4o-mini", "timestamp": now_s * 1000,
         "input_tokens": 11, "output_tokens": 1},
        {"request_id": "shared-1", "api_key_id": b, "model": "gpt-4o-mini", "timestamp": now_s * 1000,
         "input_tokens": 13, "output_tokens": 1}]).encode()
    out["reused-id"] = json.dumps([  # no gateway request id: the adapter derives one
        {"api_key_id": "key_e1", "response": {"id": "chatcmpl-424", "model": "gpt-4o", "created": now_s - 600,
                                              "usage": {"prompt_tokens": 100, "completion_tokens": 10}}},
        {"api_key_id": "key_e1", "response": {"id": "chatcmpl-424", "model": "gpt-4o", "created": now_s - 300,
                                              "usage": {"prompt_tokens": 200, "completion_tokens": 20}}}]).encode()
    out["cloudevents"] = json.dumps({
        "specversion": "1.0", "id": "ce-identity-1", "source": "/gateway/eu", "type": "dev.meterline.openai.v1",
        "time": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now_s))}",
        "data": {"api_key_id": "key_ce", "response": {"id": "chatcmpl-ce", "model": "gpt-4o", "created": now_s,
                                                       "usage": {"prompt_tokens": 7, "completion_tokens": 3}}}}).encode()
    return out


PATHS = {**ROUTES, "tenants": "/v1/events", "reused-id": "/v1/openai", "cloudevents": "/v1/cloudevents"}
TYPES = {"cloudevents": "application/cloudevents+json"}


async def post_all(url: str, payloads: dict[str, bytes]) -> None:
    """Posts every payload once; each must be accepted whole."""
    async with aiohttp.ClientSession() as session:
        for name, body in payloads.items():
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": TYPES.get(name, "application/json")}
            async with session.post(url + PATHS[name], data=body, headers=headers) as response:
                answer = await response.json()
                assert response.status == 200, (name, answer)
                assert not answer.get("rejected") and "partialSuccess" not in answer, (name, answer)


def per_key(queries: UsageQueries, keys: list[str], now_s: int) -> dict[str, tuple[int, int, int]]:
    day = time.strftime("%Y-%m-%d", time.gmtime(now_s - 86400))
    end = time.strftime("%Y-%m-%d", time.gmtime(now_s + 2 * 86400))
    out = {}
    for key in keys:
        totals = queries.summary(parse_request("key", key, day, end)).totals
        out[key] = (totals.requests, totals.input_tokens, totals.output_tokens)
    return out


async def test_distinct_requests_count_retries_do_not_and_answers_say_how_fresh(kafka_bootstrap, new_topic, tmp_path):
    topic = await new_topic(partitions=PARTITIONS)
    now_s = int(time.time())
    payloads = bodies(now_s)
    server = ChdbHttpProcess(tmp_path / "clickhouse").start()
    url = f"{server.url}/meterline"
    collector = CollectorProcess(tmp_path / "c", kafka_bootstrap, topic,
                                 {"METERLINE_TOPIC_PARTITIONS": str(PARTITIONS)}).start()
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, url, group=f"g-{topic}")
    try:
        await post_all(collector.url, payloads)
        worker.start()
        _, last = await topic_contents(kafka_bootstrap, topic, PARTITIONS)
        wait_until_counted([worker], last, timeout=120)
        queries = UsageQueries(connect(url), topic)
        keys = sorted({e["api_key_id"] for e in (await topic_contents(kafka_bootstrap, topic, PARTITIONS))[0]})
        first = per_key(queries, keys, now_s)
        a, b = same_partition_keys()
        assert first[a] == (1, 11, 1) and first[b] == (1, 13, 1)  # two tenants, one request id: both count
        assert first["key_e1"] == (2, 300, 30)  # a reused upstream id does not merge distinct requests
        assert first["key_ce"] == (1, 7, 3)

        sent_first = len((await topic_contents(kafka_bootstrap, topic, PARTITIONS))[0])
        await post_all(collector.url, payloads)  # every format's retry
        events, last = await topic_contents(kafka_bootstrap, topic, PARTITIONS)
        wait_until_counted([worker], last, timeout=120)
        assert per_key(queries, keys, now_s) == first
        assert len(events) == 2 * sent_first  # the collector accepted the retry (it cannot know)...
        assert worker.metric("meterline_events_duplicate_total") == sent_first  # ...the worker drops it

        # Freshness: counted through (about) now while the worker runs...
        fresh = queries.freshness().counted_through
        assert fresh is not None and fresh.timestamp() >= now_s
        worker.stop()
        before_stop = queries.freshness().counted_through
        time.sleep(1.5)
        await post_all(collector.url, {"tenants": payloads["tenants"]})  # events waiting in Kafka
        waiting_since = time.time()
        request = parse_request("key", "key_e1", time.strftime("%Y-%m-%d", time.gmtime(now_s - 86400)),
                                time.strftime("%Y-%m-%d", time.gmtime(now_s + 86400)))
        for answer in (queries.summary(request), queries.models(request), queries.series(request),
                       queries.peak_hours(request)):
            assert answer.freshness.counted_through == before_stop  # ...and not beyond a stop
            assert before_stop.timestamp() < waiting_since
        from pipeline.usage.export import csv_chunks
        csv_text = b"".join(csv_chunks(queries, request)).decode()
        assert csv_text.splitlines()[1].endswith(before_stop.isoformat())
    finally:
        worker.stop()
        collector.stop()
        server.kill()
