"""The quick start as a user runs it: `meterline demo` on the embedded default (Tansu + chDB, no Java), README's
curls to the demo's collector, the CLI while and after it runs, a second run, and `meterline produce` for
one's own events."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.commands.produce import prepare_lines, send
from pipeline.config import RollupSettings
from pipeline.contract import ContractDecoder, hash_api_key
from pipeline.devtools.brokers import free_port
from pipeline.devtools.gateway import KEYS, SPIKE_KEY
from pipeline.usage.tokens import verify
from tests.support.quickstart import CASES, posted_at

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


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def start_demo(env: dict, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_demo(demo: subprocess.Popen, log: Path) -> None:
    os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    try:
        assert demo.wait(60) == 0, log.read_text()[-3000:]
    except subprocess.TimeoutExpired:
        os.killpg(demo.pid, signal.SIGKILL)
        raise AssertionError(f"demo did not stop on Ctrl-C:\n{log.read_text()[-3000:]}")


def cli(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def usage_totals(env: dict, key: str, start: str, end: str) -> dict:
    result = cli(env, "usage", "--key", key, "--from", start, "--to", end, "--json")
    assert result.returncode == 0, result.stderr
    assert "DB::Exception" not in result.stderr
    return json.loads(result.stdout)["summary"]["totals"]


def readme_collector_block(ingest_port: int, data: Path) -> str:
    """README's copy-paste curls for the collector, pointed at this demo's port and data folder."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    block = next(b for b in blocks if "/v1/otlp/v1/traces" in b)
    return block.replace("127.0.0.1:6070", f"127.0.0.1:{ingest_port}").replace(".meterline/", f"{data}/")


def caught_up(text: str) -> bool:
    """Whether a live status line shows everything the gateway sent counted (collector events come on top)."""
    lines = re.findall(r"live +sent +([\d,]+) +counted +([\d,]+) .*lag +(\d+) msgs", text)
    return any(int(counted.replace(",", "")) >= int(sent.replace(",", "")) and lag == "0"
               for sent, counted, lag in lines)


def check_demo_output(text: str) -> None:
    """One log format, no terminal control codes, no connection errors while the broker starts, history
    progress, and alert lines that say how far above what the usage was."""
    assert "\x1b" not in text and "\b" not in text
    assert "ERROR aiokafka" not in text and "Unable connect" not in text
    welcome = False
    for line in text.splitlines():
        if line.strip() == "" or (welcome and line.startswith("  ")):
            welcome = welcome or line.strip() == ""
            continue
        welcome = False
        assert LOG_LINE.match(line), f"not in the log format: {line!r}"
    assert re.search(r"INFO meterline\.demo: history \d+/\d+ h  sent", text)
    assert re.search(rf"WARNING agents\.app: alert opened: {SPIKE_KEY} model=\S+ metric=\w+: \S+/h "
                     r"\(baseline \S+/h, threshold \S+/h, rule \w+\)", text)
    assert "WARNING agents.app: alert resolved" not in text


@pytest.mark.slow
def test_demo_meters_collector_payloads_alerts_stops_cleanly_and_never_doubles_on_a_rerun(tmp_path):
    port, ingest_port, data = free_port(), free_port(), tmp_path / "data"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env = {**clean, "METERLINE_DATA_DIR": str(data), "METERLINE_WEB_PORT": str(port),
           "METERLINE_INGEST_PORT": str(ingest_port)}
    log = tmp_path / "demo.log"
    started = time.monotonic()
    demo = start_demo(env, log, "--history-days", "1.1", "--rate", "5", "--spike-after", "5")
    first_run_hour = datetime.now(UTC).strftime("%Y-%m-%dT%H:00:00Z")
    try:
        token = wait_for(lambda: (data / "admin-token").exists() and (data / "admin-token").read_text().strip(),
                         60, "admin token", log)
        base = f"http://127.0.0.1:{port}"
        now = datetime.now(UTC)
        span = f"from={(now - timedelta(days=2)):%Y-%m-%d}&to={(now + timedelta(days=1)):%Y-%m-%d}"
        for key, *_ in KEYS:
            summary = wait_for(lambda: (s := http_json(f"{base}/api/v1/summary?scope=key&id={key}&{span}", token))
                               and s["status"]["has_usage"] and s, 120, f"usage of {key}", log)
            assert summary["totals"]["requests"] > 0
            print(f"{key}: first data {time.monotonic() - started:.1f} s after the demo started")

        # README's curls, twice (the second time is a retry: same request ids), in plain sh.
        wait_for(lambda: "collector ready" in log.read_text(), 60, "the collector", log)
        posted_s = int(time.time())
        # The second run is a gateway's retry: the very same payloads, so the same stamped time (a re-stamped
        # response is another request when its upstream id is reused: docs/ingest.md "Request ids").
        block = readme_collector_block(ingest_port, data).replace("NOW=$(date +%s)", f"NOW={posted_s}")
        assert f"NOW={posted_s}" in block
        for _ in range(2):
            posted = subprocess.run(["sh", "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert posted.returncode == 0, posted.stderr
            answers = [json.loads(line) for line in posted.stdout.splitlines()]
            assert answers == [{"accepted": len(case.requests), "rejected": []} for case in CASES[:4]] + [{}]
        # Each key's numbers, exactly, through `meterline usage` (which asks the running demo's API).
        for case in CASES:
            expected = case.totals(posted_at(posted_s))
            got = wait_for(lambda: (t := usage_totals(env, case.key, "today-1", "tomorrow"))["requests"]
                           >= case.totals(posted_at(posted_s))["requests"] and t, 60, f"usage of {case.key}", log)
            assert {name: got[name] for name in expected if name != "total_cost"} == \
                   {name: value for name, value in expected.items() if name != "total_cost"}, case.name
            assert Decimal(got["total_cost"]) == expected["total_cost"], case.name

        wait_for(lambda: f"alert opened: {SPIKE_KEY}" in log.read_text(), 150, "the spike alert", log)
        wait_for(lambda: "history sent" in log.read_text(), 120, "the end of the history", log)
        # Everything sent is counted before the stop (the embedded broker forgets what it still holds).
        wait_for(lambda: caught_up(log.read_text().split("history sent")[-1]), 120, "the history counted", log)
        text = log.read_text()
        assert f"{base}/usage#token=" in text and f"http://127.0.0.1:{ingest_port}/v1/events" in text
        check_demo_output(text)
    finally:
        stop_demo(demo, log)

    # The data folder stays usable once the demo is gone, with the demo's own token secret.
    for case in CASES:
        assert usage_totals(env, case.key, "today-1", "tomorrow")["requests"] == len(case.requests)
    token_run = cli(env, "token", "--key", SPIKE_KEY)
    assert token_run.returncode == 0, token_run.stderr
    assert verify([(data / "token-secret").read_text().strip()], token_run.stdout.strip()).api_key_id == SPIKE_KEY

    # A second run sends no history the store already holds: every hour before the first run is unchanged.
    history_start = f"{datetime.now(UTC) - timedelta(days=3):%Y-%m-%d}"
    before = {key: usage_totals(env, key, history_start, first_run_hour) for key, *_ in KEYS}
    second_log = tmp_path / "demo-again.log"
    demo = start_demo(env, second_log, "--history-days", "1.1", "--rate", "5", "--spike-after", "600")
    try:
        wait_for(lambda: "history sent" in second_log.read_text(), 120, "the second run's history", second_log)
        assert "already stored" in second_log.read_text()
        wait_for(lambda: re.search(r"live +sent", second_log.read_text()), 60, "live traffic", second_log)
    finally:
        stop_demo(demo, second_log)
    after = {key: usage_totals(env, key, history_start, first_run_hour) for key, *_ in KEYS}
    assert after == before
    for case in CASES:
        assert usage_totals(env, case.key, "today-1", "tomorrow")["requests"] == len(case.requests)


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
