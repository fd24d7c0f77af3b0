"""The collector's HTTP contract with a stand-in for Kafka: auth, shapes of answers, per-event rejections,
atomic requests, body limits, 503 on Kafka trouble (never a 2xx before the ack), and batching."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from pipeline.config import IngestSettings, RollupSettings
from pipeline.contract import ContractDecoder
from pipeline.ingest.app import Collector
from pipeline.ingest.batcher import KeyedBatcher
from pipeline.ingest.metrics import IngestMetrics
from pipeline.ingest.producer import OutgoingMessage, kafka_partition
from pipeline.ingest.validation import EventValidator, TimeWindow
from schemas import EXAMPLES_DIR

TOKEN = "ingest-token-1"
# The collector's clock in these tests: an hour after the events' (and the adapter examples') timestamps.
NOW_MS = 1_795_605_300_000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeKafka:
    """Acknowledges, refuses or ignores what it is sent, and remembers it."""

    def __init__(self) -> None:
        self.mode = "ack"
        self.messages: list[OutgoingMessage] = []

    async def send(self, messages: list[OutgoingMessage]) -> None:
        self.messages += messages
        for message in messages:
            if self.mode == "ack":
                message.acked.set_result(None)
            elif self.mode == "fail":
                message.acked.set_exception(ConnectionError("broker down"))

    def events(self) -> list[dict]:
        return [event for m in self.messages for event in json.loads(m.value())]


def event(i: int, key: str = "k1", **fields) -> dict:
    return {"request_id": f"r{i}", "api_key_id": key, "model": "gpt-4o", "timestamp": 1795601700000 + i,
            "input_tokens": 10, "output_tokens": 2, **fields}


@pytest.fixture
def kafka() -> FakeKafka:
    return FakeKafka()


@pytest.fixture
async def client(kafka: FakeKafka) -> AsyncIterator[TestClient]:
    settings = IngestSettings(tokens=("other-token", TOKEN), max_body_bytes=64 * 1024, linger_s=0.002,
                              produce_timeout_s=0.3)
    batcher = KeyedBatcher(kafka.send, max_events=1000, linger_s=settings.linger_s)
    validator = EventValidator(ContractDecoder(), TimeWindow.of(RollupSettings(), lambda: NOW_MS))
    collector = Collector(settings, validator, batcher, IngestMetrics(CollectorRegistry()))
    async with TestClient(TestServer(collector.application())) as test_client:
        yield test_client
    await batcher.close()


async def post(client: TestClient, path: str, body, content_type: str = "application/json", headers=AUTH,
               query: str = ""):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    response = await client.post(path + query, data=data, headers={**headers, "Content-Type": content_type})
    return response.status, await response.json(), response.headers


async def test_one_event_an_array_and_ndjson_are_accepted(client, kafka):
    assert (await post(client, "/v1/events", event(1)))[:2] == (200, {"accepted": 1, "rejected": []})
    assert (await post(client, "/v1/events", [event(2), event(3)]))[:2] == (200, {"accepted": 2, "rejected": []})
    ndjson = "\n".join(json.dumps(event(i)) for i in (4, 5, 6)) + "\n"
    assert (await post(client, "/v1/events", ndjson, "application/x-ndjson"))[:2] == (200, {"accepted": 3, "rejected": []})
    assert sorted(e["request_id"] for e in kafka.events()) == [f"r{i}" for i in range(1, 7)]


async def test_invalid_events_are_reported_one_by_one_and_the_valid_ones_produced(client, kafka):
    body = [event(1), event(2, input_tokens=-1), {"model": "x"}, event(3, cache_read_tokens=11), 7, event(4)]
    status, answer, _ = await post(client, "/v1/events", body)
    assert status == 200 and answer["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (1, "invalid_field"), (2, "missing_field"), (3, "inconsistent_tokens"), (4, "not_an_object")]
    assert all(r["detail"] for r in answer["rejected"])
    assert {e["request_id"] for e in kafka.events()} == {"r1", "r4"}


async def test_atomic_requests_produce_nothing_when_any_event_is_invalid(client, kafka):
    status, answer, _ = await post(client, "/v1/events", [event(1), event(2, model="")], query="?atomic=true")
    assert status == 400 and answer["accepted"] == 0 and answer["rejected"][0]["index"] == 1
    await asyncio.sleep(0.02)
    assert kafka.messages == []
    assert (await post(client, "/v1/events", [event(1)], query="?atomic=true"))[0] == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}])
async def test_requests_without_a_valid_ingest_token_are_refused(client, kafka, headers):
    status, answer, response_headers = await post(client, "/v1/events", event(1), headers=headers)
    assert status == 401 and answer["error"] == "unauthorized" and "Bearer" in response_headers["WWW-Authenticate"]
    assert kafka.messages == []


async def test_unreadable_and_oversized_bodies(client):
    assert (await post(client, "/v1/events", b'[{"request_id": '))[:2][0] == 400
    assert (await post(client, "/v1/events", b"[]"))[1]["error"] == "empty_batch"
    big = [event(i, padding="x" * 1000) for i in range(100)]
    status, answer, _ = await post(client, "/v1/events", big)
    assert status == 413 and answer["error"] == "body_too_large"
    assert (await post(client, "/v1/otlp/v1/traces", b"\x0a\x00", "application/x-protobuf"))[0] == 415


async def test_kafka_errors_answer_503_with_retry_after(client, kafka):
    kafka.mode = "fail"
    status, answer, headers = await post(client, "/v1/events", [event(1)])
    assert (status, answer["error"], headers["Retry-After"]) == (503, "kafka_unavailable", "1")
    kafka.mode = "ack"
    assert (await post(client, "/v1/events", [event(1)]))[0] == 200


async def test_no_acknowledgement_in_time_answers_503_never_2xx(client, kafka):
    kafka.mode = "hang"
    status, answer, headers = await post(client, "/v1/events", [event(1), event(2, key="k2")])
    assert status == 503 and "Retry-After" in headers
    health = await (await client.get("/healthz")).json()
    assert health == {"status": "ok", "kafka": "failing"}


async def test_concurrent_requests_are_produced_as_batches_of_one_key(client, kafka):
    requests = [post(client, "/v1/events", [event(10 * r + i, key=f"k{i % 2}") for i in range(10)]) for r in range(8)]
    results = await asyncio.gather(*requests)
    assert all(status == 200 for status, *_ in results)
    assert len(kafka.events()) == 80 and {m.key for m in kafka.messages} == {b"k0", b"k1"}
    for message in kafka.messages:  # each value is a contract batch of one key, keyed by it
        assert {e["api_key_id"] for e in json.loads(message.value())} == {message.key.decode()}


async def test_requests_within_one_linger_share_messages():
    kafka = FakeKafka()
    batcher = KeyedBatcher(kafka.send, max_events=1000, linger_s=0.01)
    first = {batcher.add(f"k{i % 2}", json.dumps(event(i)).encode()) for i in range(10)}
    second = {batcher.add(f"k{i % 2}", json.dumps(event(100 + i)).encode()) for i in range(10)}
    assert first == second and len(first) == 2  # two requests wait on the same two messages
    await asyncio.gather(*first)
    assert sorted(len(m.events) for m in kafka.messages) == [10, 10]


async def test_otlp_answers_in_otlp_shape(client, kafka):
    body = (EXAMPLES_DIR / "adapters/otlp/genai-spans.json").read_bytes()
    status, answer, _ = await post(client, "/v1/otlp/v1/traces", body)
    assert status == 200 and answer["partialSuccess"]["rejectedSpans"] == 3
    assert "span 5: inconsistent_tokens" in answer["partialSuccess"]["errorMessage"]
    assert len(kafka.events()) == 3


async def test_every_adapter_route_and_cloudevents_content_types(client, kafka):
    examples = EXAMPLES_DIR / "adapters"
    cases = [("/v1/openai", "openai/chat-completions.json", "application/json", 1),
             ("/v1/anthropic", "anthropic/messages.ndjson", "application/x-ndjson", 1),
             ("/v1/litellm", "litellm/standard-logging-payloads.json", "application/json", 3),
             # LiteLLM's GenericAPILogger sends its ndjson format labelled application/json
             ("/v1/litellm", "litellm/generic-logger-ndjson-as-json.json", "application/json", 2),
             ("/v1/events", "cloudevents/structured.json", "application/cloudevents+json", 1),
             ("/v1/cloudevents", "cloudevents/batch.json", "application/cloudevents-batch+json", 4)]
    for path, example, content_type, accepted in cases:
        status, answer, _ = await post(client, path, (examples / example).read_bytes(), content_type)
        assert (status, answer["accepted"]) == (200, accepted), (path, answer)


async def test_metrics_count_requests_events_and_rejections(client, kafka):
    await post(client, "/v1/events", [event(1), event(2, input_tokens=-5)])
    await post(client, "/v1/events", event(3), headers={})
    text = await (await client.get("/metrics")).text()
    assert 'meterline_ingest_requests_total{code="2xx",route="events"} 1.0' in text
    assert 'meterline_ingest_requests_total{code="4xx",route="events"} 1.0' in text
    assert 'meterline_ingest_events_accepted_total{route="events"} 1.0' in text
    assert 'meterline_ingest_events_rejected_total{reason="invalid_field",route="events"} 1.0' in text
    assert "meterline_ingest_produce_duration_seconds_count 1.0" in text


async def test_batcher_splits_messages_at_the_contract_batch_size():
    kafka = FakeKafka()
    batcher = KeyedBatcher(kafka.send, max_events=3, linger_s=0.001)
    futures = [batcher.add("k", json.dumps(event(i)).encode()) for i in range(7)]
    await asyncio.gather(*futures)
    assert [len(m.events) for m in kafka.messages] == [3, 3, 1] and batcher.unacked == 0


async def test_batcher_splits_messages_at_the_byte_limit():
    kafka = FakeKafka()
    batcher = KeyedBatcher(kafka.send, max_events=1000, linger_s=0.001, max_message_bytes=1000)
    events = [json.dumps(event(i, padding="x" * 200)).encode() for i in range(10)]
    await asyncio.gather(*(batcher.add("k", e) for e in events))
    assert all(len(m.value()) <= 1000 for m in kafka.messages) and len(kafka.messages) > 1
    assert sum(len(m.events) for m in kafka.messages) == 10


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 6, 12, 50])
def test_partition_equals_kafkas_default_partitioner(partitions):
    every = list(range(partitions))
    keys = [f"key-{i:02d}".encode() for i in range(200)] + [b"", b"\xff\xfe", "ключ".encode()]
    for key in keys:
        assert kafka_partition(key, partitions, {}) == DefaultPartitioner()(key, every, every)


async def test_gzip_bodies_are_read_and_their_size_limited_after_decompression(client, kafka):
    body = gzip.compress(json.dumps([event(i) for i in range(50)]).encode())
    headers = {**AUTH, "Content-Encoding": "gzip"}
    assert (await post(client, "/v1/events", body, headers=headers))[:2] == (200, {"accepted": 50, "rejected": []})
    bomb = gzip.compress(json.dumps([event(i, padding="x" * 2000) for i in range(100)]).encode())
    assert len(bomb) < 64 * 1024 and (await post(client, "/v1/events", bomb, headers=headers))[0] == 413


def test_the_collector_refuses_to_start_without_an_ingest_token(monkeypatch, capsys):
    from pipeline.cli import main

    monkeypatch.delenv("METERLINE_INGEST_TOKENS", raising=False)
    assert main(["collect"]) == 2
    assert "METERLINE_INGEST_TOKENS" in capsys.readouterr().err


async def test_events_outside_the_workers_time_bounds_are_rejected_with_its_reasons(client, kafka):
    """The worker's defaults (RollupSettings): 7 days late, 5 minutes early; both edges are inside."""
    bounds = RollupSettings()
    late_edge, early_edge = NOW_MS - int(bounds.max_lateness_s * 1000), NOW_MS + int(bounds.max_future_skew_s * 1000)
    body = [event(1, timestamp=late_edge), event(2, timestamp=late_edge - 1), event(3, timestamp=early_edge),
            event(4, timestamp=early_edge + 1), event(5, timestamp=NOW_MS // 1000),
            event(6, timestamp="2026-11-25T11:20:00.001Z")]  # RFC 3339: NOW_MS + 5 min + 1 ms
    status, answer, _ = await post(client, "/v1/events", body)
    assert status == 200 and answer["accepted"] == 2
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (1, "too_late"), (3, "future_timestamp"), (4, "too_late"), (5, "future_timestamp")]
    assert "epoch seconds" in answer["rejected"][2]["detail"]
    assert {e["request_id"] for e in kafka.events()} == {"r1", "r3"}
    text = await (await client.get("/metrics")).text()
    assert 'meterline_ingest_events_rejected_total{reason="too_late",route="events"} 2.0' in text


async def test_time_bounds_follow_the_workers_settings(kafka):
    """METERLINE_MAX_LATENESS / METERLINE_MAX_FUTURE_SKEW, read once for both the worker and the collector."""
    from pipeline.config import load_settings

    rollup = load_settings({"METERLINE_MAX_LATENESS": "1h", "METERLINE_MAX_FUTURE_SKEW": "10s"}).rollup
    validator = EventValidator(ContractDecoder(), TimeWindow.of(rollup, lambda: NOW_MS))
    batcher = KeyedBatcher(kafka.send, max_events=1000, linger_s=0.001)
    collector = Collector(IngestSettings(tokens=(TOKEN,)), validator, batcher, IngestMetrics(CollectorRegistry()))
    async with TestClient(TestServer(collector.application())) as test_client:
        body = [event(1, timestamp=NOW_MS - 3_600_001), event(2, timestamp=NOW_MS + 10_001), event(3, timestamp=NOW_MS)]
        status, answer, _ = await post(test_client, "/v1/events", body)
    await batcher.close()
    assert (status, answer["accepted"]) == (200, 1)
    assert [r["reason"] for r in answer["rejected"]] == ["too_late", "future_timestamp"]


async def test_an_unexpected_failure_is_a_counted_json_500_that_logs_no_body(client, kafka, monkeypatch, caplog):
    secret = "sk-live-NEVER-LOGGED"

    def broken(self, mapped):
        raise RuntimeError(f"bug while judging {secret}")

    monkeypatch.setattr(EventValidator, "judge", broken)
    status, answer, _ = await post(client, "/v1/events", [event(1, api_key=secret)])
    assert (status, answer["error"]) == (500, "internal_error") and "RuntimeError" in answer["detail"]
    assert secret not in json.dumps(answer)
    assert "RuntimeError at" in caplog.text and "in _process" in caplog.text and secret not in caplog.text
    assert TOKEN not in caplog.text
    text = await (await client.get("/metrics")).text()
    assert 'meterline_ingest_requests_total{code="5xx",route="events"} 1.0' in text
    monkeypatch.undo()
    assert (await post(client, "/v1/events", [event(2)]))[0] == 200  # and it goes on


async def test_unreadable_bodies_are_400_with_a_reason_on_every_route(client, kafka):
    deep = b"[" * 30_000 + b"]" * 30_000  # within this fixture's 64 KiB limit; the 100k case runs on Kafka
    bad_utf8 = json.dumps([event(1, model="@@")]).encode().replace(b"@@", b"\xff\xfe")
    cases = [("/v1/events", deep, "application/json", "too_deep"),
             ("/v1/openai", deep, "application/json", "too_deep"),
             ("/v1/anthropic", deep, "application/x-ndjson", None),  # NDJSON: the line is rejected alone
             ("/v1/litellm", b'{"id": "\xff"}', "application/json", "invalid_encoding"),
             ("/v1/otlp/v1/traces", b'{"resourceSpans": [1, {"scopeSpans": [null, {"spans": [7]}]}]}',
              "application/json", None),
             ("/v1/cloudevents", b"\xef\xbb\xbf{}", "application/cloudevents+json", "invalid_json")]
    for path, body, content_type, reason in cases:
        status, answer, _ = await post(client, path, body, content_type)
        if reason is None:
            assert status == 200 and answer not in ({}, {"accepted": 0, "rejected": []}), (path, answer)
        else:
            assert (status, answer["error"]) == (400, reason), (path, answer)
            assert answer["detail"].startswith(("RecursionError", "UnicodeDecodeError", "DecodeError")), answer
    status, answer, _ = await post(client, "/v1/events", bad_utf8)
    assert (status, [r["reason"] for r in answer["rejected"]]) == (200, ["invalid_encoding"])


async def test_a_declared_length_over_the_limit_is_413_before_reading(client):
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                 b"\r\nContent-Length: 1000000000\r\n\r\n{")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 413")
    writer.close()
