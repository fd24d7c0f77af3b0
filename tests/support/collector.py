"""Harness for the collector's end-to-end tests: the collector as a subprocess, HTTP clients that retry like
a well-behaved gateway, and a reader of every event on a topic."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.devtools.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-ingest-token"


class CollectorProcess:
    """``meterline collect`` in its own process, with its log in ``workdir``."""

    def __init__(self, workdir: Path, bootstrap: str, topic: str, extra_env: dict | None = None) -> None:
        self.port = free_port()
        self.log_path = workdir / f"collector-{self.port}.log"
        self.env = {**os.environ, "METERLINE_KAFKA_BROKERS": bootstrap, "METERLINE_USAGE_TOPIC": topic,
                    "METERLINE_INGEST_TOKENS": TOKEN, "METERLINE_INGEST_PORT": str(self.port),
                    "METERLINE_DATA_DIR": str(workdir / "data"), **(extra_env or {})}
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "CollectorProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "collect"], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"the collector did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 60) -> int | None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return None if self.process is None else self.process.returncode


@dataclass
class ClientReport:
    acked: list[dict] = field(default_factory=list)  # events of requests answered 200 (accepted ones)
    statuses: dict[int, int] = field(default_factory=dict)  # status -> responses
    connection_errors: int = 0
    rejected: int = 0


async def send_until_acked(session: aiohttp.ClientSession, url: str, chunks: list[list[dict]], ndjson: bool,
                           report: ClientReport, pause_s: float = 0.0, deadline_s: float = 240) -> None:
    """Posts each chunk until it is answered 200, retrying the whole chunk after a 503 or a dropped
    connection (as gateways should: the worker drops the repeats by request_id), ``pause_s`` apart."""
    deadline = time.monotonic() + deadline_s
    for chunk in chunks:
        if ndjson:
            body, content_type = "\n".join(map(json.dumps, chunk)).encode(), "application/x-ndjson"
        else:
            body, content_type = json.dumps(chunk).encode(), "application/json"
        while True:
            assert time.monotonic() < deadline, "a chunk was never acknowledged"
            try:
                async with session.post(f"{url}/v1/events", data=body, headers={
                        "Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}) as response:
                    report.statuses[response.status] = report.statuses.get(response.status, 0) + 1
                    answer = await response.json()
                    if response.status == 200:
                        bad = {r["index"] for r in answer["rejected"]}
                        report.rejected += len(bad)
                        report.acked += [e for i, e in enumerate(chunk) if i not in bad]
                        await asyncio.sleep(pause_s)
                        break
                    assert response.status == 503, answer
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                report.connection_errors += 1
                await asyncio.sleep(0.5)


async def topic_contents(bootstrap: str, topic: str, partitions: int) -> tuple[list[dict], dict[int, int]]:
    """Every event on ``topic`` (messages are contract batches) and each partition's last offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        events: list[dict] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for record in batch:
                    assert record.key.decode() == json.loads(record.value)[0]["api_key_id"]
                    events += json.loads(record.value)
        return events, {tp.partition: end[tp] - 1 for tp in tps if end[tp] > 0}
    finally:
        await consumer.stop()
