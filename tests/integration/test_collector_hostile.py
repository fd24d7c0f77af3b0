"""Hostile bodies against the real collector (``meterline collect`` in its own process) on real Kafka.

Every case of both hostile corpora (tests/support/hostile.py, and the checked-in tests/data/hostile/) goes to
every route; on ``/v1/events`` each is judged exactly as its expectation says (the checked-in one: as the
worker judges it, but for the differences in WORKER_ONLY), and Kafka holds exactly the events answered as
accepted. Hostile values in every field of every route's valid body are answered 4xx or
200. Unsupported and corrupt content codings are 415 / 400. A 1 GiB gzip bomb (about 1 MB on the wire) is
refused with 413 while the collector's peak RSS (VmHWM from /proc, reset before) grows by at most twice the
configured body limit, also with 6 bombs at once. After all of it the collector is alive, ``/healthz`` is ok
and no request was answered 5xx.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import zlib
from collections import Counter
from pathlib import Path

import aiohttp
import jsonschema
import pytest

from schemas import USAGE_EVENT_SCHEMA
from support.collector import TOKEN, CollectorProcess, topic_contents
from support.corpus import hostile_cases
from support.hostile import KEY, contract_cases, route_cases, route_templates

pytestmark = [pytest.mark.kafka]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = {name: (path, ctype) for name, (path, ctype, _) in route_templates(0).items()}
# Where the collector and the worker judge a corpus case differently, and why (checked-in corpus names).
WORKER_ONLY = {
    "key-mismatch": "a request has no Kafka key to disagree with: the collector keys each message by its events' id",
    "batch-too-large": "over HTTP an array may hold any number of records; the collector regroups them into "
                       "contract batches of at most METERLINE_MAX_BATCH_EVENTS",
}
MAX_BODY = 16 * 1024 * 1024  # the default METERLINE_INGEST_MAX_BODY_BYTES
GIB = 1024**3


async def post(session: aiohttp.ClientSession, url: str, body: bytes, content_type: str | None = "application/json",
               **headers: str) -> tuple[int, dict]:
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {}), **headers}
    async with session.post(url, data=body, headers=headers) as response:
        assert response.content_type == "application/json", (response.status, await response.text())
        return response.status, await response.json()


def assert_answered(status: int, answer: dict, what: str) -> None:
    """A 4xx with a reason, or a 200 (rejections, if any, each with a reason)."""
    assert status in (200, 400, 413, 415), (what, status, answer)
    if status != 200:
        assert answer["error"] and answer["detail"], (what, answer)
    for rejected in answer.get("rejected", []):
        assert rejected["reason"] and rejected["detail"], (what, rejected)


def collector_metrics(collector: CollectorProcess) -> str:
    import urllib.request

    return urllib.request.urlopen(f"{collector.url}/metrics", timeout=10).read().decode()


async def assert_alive_and_healthy(collector: CollectorProcess) -> None:
    assert collector.process.poll() is None, collector.log_path.read_text()[-3000:]
    async with aiohttp.ClientSession() as session, session.get(f"{collector.url}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok", "kafka": "ok"})
    assert 'code="5xx"' not in collector_metrics(collector)


@pytest.fixture
async def collector(kafka_bootstrap, new_topic, tmp_path):
    topic = await new_topic(partitions=2)
    process = CollectorProcess(tmp_path / "collector", kafka_bootstrap, topic).start()
    process.topic = topic
    yield process
    assert process.stop() == 0, process.log_path.read_text()[-3000:]


async def test_the_hostile_corpus_on_every_route(collector, kafka_bootstrap):
    now_ms = time.time_ns() // 1_000_000
    cases = contract_cases(now_ms)
    assert len(cases) >= 40
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for case in cases:
            status, answer = await post(session, f"{collector.url}/v1/events", case.body)
            assert_answered(status, answer, case.name)
            expect, reasons = case.expect, {r["reason"] for r in answer.get("rejected", [])}
            if expect.whole:
                assert (status == 400 and answer["error"] in expect.reasons) or \
                       (status == 200 and answer["accepted"] == 0 and len(answer["rejected"]) == 1
                        and reasons <= expect.reasons), (case.name, status, answer)
            else:
                assert status == 200, (case.name, answer)
                assert (answer["accepted"], len(answer["rejected"])) == (expect.good, expect.bad), (case.name, answer)
                assert reasons <= expect.reasons, (case.name, answer)
            for name, (path, content_type) in ROUTES.items():
                if name != "events":
                    assert_answered(*await post(session, collector.url + path, case.body, content_type),
                                    f"{case.name} on {path}")
    await assert_alive_and_healthy(collector)
    produced, _ = await topic_contents(kafka_bootstrap, collector.topic, 2)
    # Kafka holds each accepted event exactly once, and nothing else.
    assert Counter(e["request_id"] for e in produced) == Counter(i for case in cases for i in case.accepted_ids)
    by_id = {event["request_id"]: event for event in produced}
    schema = json.loads(USAGE_EVENT_SCHEMA.read_text())
    for case in cases:
        for request_id in case.accepted_ids:
            jsonschema.validate(by_id[request_id], schema)
            assert {k: by_id[request_id][k] for k in case.produced} == case.produced, case.name


async def test_the_checked_in_corpus_is_judged_as_the_worker_judges_it(collector, kafka_bootstrap):
    cases = hostile_cases(time.time_ns() // 1_000_000)
    assert len(cases) >= 40
    accepted = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for case in cases:
            status, answer = await post(session, f"{collector.url}/v1/events", case.value)
            assert_answered(status, answer, case.name)
            accepted += answer.get("accepted", 0)
            if case.name in WORKER_ONLY:
                continue
            got = sorted((r["index"], r["reason"]) for r in answer.get("rejected", []))
            [whole] = [reason for index, reason in case.rejections if index is None] or [None]
            if whole is not None:  # the whole message: refused, or its one event rejected
                assert (status == 400 and answer["error"] == whole) or \
                       (status == 200 and answer["accepted"] == 0 and got == [(0, whole)]), (case.name, status, answer)
            else:
                assert (status, answer["accepted"], got) == (200, case.counted, sorted(case.rejections)), \
                    (case.name, answer)
            for name, (path, content_type) in ROUTES.items():
                if name != "events":
                    assert_answered(*await post(session, collector.url + path, case.value, content_type),
                                    f"{case.name} on {path}")
    await assert_alive_and_healthy(collector)
    produced, _ = await topic_contents(kafka_bootstrap, collector.topic, 2)
    assert len(produced) == accepted


async def test_hostile_values_in_every_field_of_every_route(collector, kafka_bootstrap):
    now_ms = time.time_ns() // 1_000_000
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for route, (path, content_type, template) in route_templates(now_ms).items():
            status, answer = await post(session, collector.url + path, json.dumps(template).encode(), content_type)
            assert status == 200 and answer in ({}, {"accepted": 1, "rejected": []}), answer  # the template is valid
            for name, body in route_cases(route, now_ms):
                assert_answered(*await post(session, collector.url + path, body, content_type), name)
    await assert_alive_and_healthy(collector)
    produced, _ = await topic_contents(kafka_bootstrap, collector.topic, 2)
    schema = json.loads(USAGE_EVENT_SCHEMA.read_text())
    for event in produced:  # whatever got through is a valid contract event
        jsonschema.validate(event, schema)


async def test_content_codings_and_types(collector):
    event = json.dumps({"request_id": "h-coding", "api_key_id": KEY, "model": "m", "input_tokens": 1,
                        "output_tokens": 1, "timestamp": time.time_ns() // 1_000_000}).encode()
    url = f"{collector.url}/v1/events"
    async with aiohttp.ClientSession() as session:
        for coding in ("zstd", "br", "compress", "x-unknown", "gzip, gzip", "gzip, br"):
            status, answer = await post(session, url, gzip.compress(event), **{"Content-Encoding": coding})
            assert (status, answer["error"]) == (415, "unsupported_content_encoding"), (coding, answer)
        for name, body in [("corrupt", b"\x1f\x8b\x08\x00garbage-garbage"), ("truncated", gzip.compress(event)[:-12]),
                           ("not gzip", event), ("empty", b""), ("trailing", gzip.compress(event) + b"junk")]:
            status, answer = await post(session, url, body, **{"Content-Encoding": "gzip"})
            assert (status, answer["error"]) == (400, "invalid_compression"), (name, answer)
        for coding, body in [("gzip", gzip.compress(event) + gzip.compress(b"\n")), ("deflate", zlib.compress(event)),
                             ("deflate", zlib.compress(event)[2:-4]), ("identity", event), ("x-gzip", gzip.compress(event))]:
            status, answer = await post(session, url, body, "application/x-ndjson", **{"Content-Encoding": coding})
            assert (status, answer) == (200, {"accepted": 1, "rejected": []}), (coding, answer)
        for content_type in ("text/plain", "application/xml", "application/json; charset=latin-1",
                             "application/x-protobuf", "multipart/form-data; boundary=x"):
            status, answer = await post(session, url, event, content_type)
            assert (status, answer["error"]) == (415, "unsupported_media_type"), (content_type, answer)
    # Header bytes that are not UTF-8 (a client can send any): still a 401, not a crash.
    status_line = await raw_request(collector.port, b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
                                    b"Authorization: Bearer \xff\xfe\r\nContent-Length: 2\r\n\r\n{}")
    assert status_line.startswith(b"HTTP/1.1 401"), status_line
    await assert_alive_and_healthy(collector)


async def raw_request(port: int, request: bytes) -> bytes:
    """Sends ``request`` as bytes and returns the response's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


# --- gzip bombs and the collector's memory ---------------------------------------------------------------

@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped at level 9: about 1 MB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(GIB // len(zeros))) + compressor.flush()
    assert len(bomb) < 1_100_000
    return bomb


def _status(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in lines) if k in ("VmRSS", "VmHWM")}


async def _bomb_growth(collector: CollectorProcess, bomb: bytes, concurrent: int) -> int:
    """Peak RSS growth (bytes) of the collector while ``concurrent`` bombs are posted at once; each is 413."""
    pid = collector.process.pid
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        warm = gzip.compress(b"\n".join(json.dumps({"request_id": f"h-warm-{i}", "api_key_id": KEY, "model": "m",
                                                    "input_tokens": 1, "output_tokens": 1,
                                                    "timestamp": time.time_ns() // 1_000_000}).encode()
                                        for i in range(2000)))
        for _ in range(3):  # imports, decoders and buffers settle before the measurement
            status, _ = await post(session, f"{collector.url}/v1/events", warm, "application/x-ndjson",
                                   **{"Content-Encoding": "gzip"})
            assert status == 200
        await asyncio.sleep(0.5)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = _status(pid)["VmRSS"]
        answers = await asyncio.gather(*(post(session, f"{collector.url}/v1/events", bomb, **{"Content-Encoding": "gzip"})
                                         for _ in range(concurrent)))
    assert [(status, answer["error"]) for status, answer in answers] == [(413, "body_too_large")] * concurrent
    growth = _status(pid)["VmHWM"] - before
    print(f"{concurrent} gzip bomb(s) of 1 GiB ({len(bomb)} bytes sent each): collector peak RSS "
          f"+{growth / 2**20:.1f} MiB (RSS before {before / 2**20:.1f} MiB, limit {MAX_BODY / 2**20:.0f} MiB)")
    return growth


@pytest.mark.parametrize("concurrent", [1, 6])
async def test_gzip_bombs_are_refused_within_twice_the_body_limit(collector, gzip_bomb, concurrent):
    assert await _bomb_growth(collector, gzip_bomb, concurrent) <= 2 * MAX_BODY
    await assert_alive_and_healthy(collector)
