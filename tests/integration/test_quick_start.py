"""The quick start as a user runs it: `meterline demo` on the embedded default (Tansu + chDB, no Java), and
`meterline produce` for one's own events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.devtools.brokers import free_port
from pipeline.commands.produce import prepare_lines, send
from pipeline.config import RollupSettings
from pipeline.contract import ContractDecoder, hash_api_key
from pipeline.devtools.gateway import KEYS, SPIKE_KEY

ROOT = Path(__file__).resolve().parents[2]


def http_json(url: str, token: str) -> dict | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"{what} within {timeout}s; demo output:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
def test_demo_runs_meters_alerts_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "METERLINE_DATA_DIR": str(tmp_path / "data"), "METERLINE_WEB_PORT": str(port),
           "METERLINE_KAFKA_SESSION_TIMEOUT": "6s"}
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--history-days", "1.1", "--rate", "5",
                                 "--spike-after", "5"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        token = wait_for(lambda: (tmp_path / "data" / "admin-token").exists()
                         and (tmp_path / "data" / "admin-token").read_text().strip(), 60, "admin token", log)
        base = f"http://127.0.0.1:{port}"
        now = datetime.now(UTC)
        span = f"from={(now - timedelta(days=2)):%Y-%m-%d}&to={(now + timedelta(days=1)):%Y-%m-%d}"
        for key, *_ in KEYS:
            summary = wait_for(lambda: (s := http_json(f"{base}/api/v1/summary?scope=key&id={key}&{span}", token))
                               and s["status"]["has_usage"] and s, 120, f"usage of {key}", log)
            assert summary["totals"]["requests"] > 0
        wait_for(lambda: f"alert opened: {SPIKE_KEY}" in log.read_text(), 150, "the spike alert", log)
        text = log.read_text()
        assert "usage page" in text and f"{base}/usage#token=" in text and "  sent " in text
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            demo.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            raise AssertionError(f"demo did not stop on Ctrl-C:\n{log.read_text()[-3000:]}")
    # The data folder stays usable once the demo is gone.
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "usage", "--key", SPIKE_KEY,
                             "--from", f"{now - timedelta(days=2):%Y-%m-%d}", "--to", f"{now + timedelta(days=1):%Y-%m-%d}",
                             "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["totals"]["requests"] > 0


@pytest.mark.kafka
async def test_produce_keys_each_line_by_its_api_key_and_never_sends_a_secret(kafka_bootstrap, new_topic):
    topic = await new_topic(partitions=3)
    now = int(time.time() * 1000)
    event = {"model": "gpt-4o", "timestamp": now, "input_tokens": 1, "output_tokens": 1}
    lines = [json.dumps({"request_id": "r1", "api_key_id": "key-a", **event}),
             json.dumps([{"request_id": "r2", "api_key_id": "key-b", **event}]),
             json.dumps({"request_id": "r3", "api_key": "sk-secret", **event}), "", "not json at all",
             json.dumps({"request_id": "r4", "api_key_id": "key-a", **event, "timestamp": 1})]
    prepared = prepare_lines(("\n".join(lines) + "\n").encode().splitlines(), ContractDecoder(), RollupSettings())
    assert [(p.line, p.reason) for p in prepared.problems] == [(5, "invalid_json"), (6, "too_late")]
    assert await send(kafka_bootstrap, topic, prepared.messages) == 3
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                group_id=f"read-{topic}")
    await consumer.start()
    try:
        records = []
        while len(records) < 3:
            for batch in (await consumer.getmany(timeout_ms=2000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    assert sorted(r.key for r in records) == sorted([b"key-a", b"key-b", hash_api_key("sk-secret").encode()])
    assert not any(b"sk-secret" in r.value for r in records)
    assert [json.loads(r.value)["api_key_id"] for r in records if r.key == hash_api_key("sk-secret").encode()] \
        == [hash_api_key("sk-secret")]
    assert prepare_lines([b"", b"  "], ContractDecoder(), RollupSettings()).messages == []
