"""The worker's own HTTP server on the embedded default: the usage API reads the store the worker writes
(no other process can open it), and /metrics follows the naming rules."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from support.processes import WorkerProcess, wait_until_counted
from support.workload import generate, ledger_of, produce

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

ADMIN = "test-admin-token"


def get(port: int, path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


async def test_usage_api_and_metrics_are_served_by_the_worker(kafka_bootstrap, new_topic, tmp_path):
    topic = await new_topic(partitions=2)
    placed = await produce(kafka_bootstrap, topic, generate(1500, time.time_ns() // 1_000_000, seed=9, keys=3))
    ledger = ledger_of(placed)
    worker = WorkerProcess(tmp_path / "w", kafka_bootstrap, topic, f"chdb://{tmp_path / 'ch'}", group=f"g-{topic}",
                           extra_env={"METERLINE_API_ADMIN_TOKEN": ADMIN, "METERLINE_TOPIC_PARTITIONS": "2"}).start()
    try:
        wait_until_counted([worker], ledger.last_offsets, timeout=90)
        key = "key-01"
        rows = [row for (k, _, _), row in ledger.usage.items() if k == key]
        start = datetime.now(UTC) - timedelta(days=9)
        end = datetime.now(UTC) + timedelta(hours=2)
        status, body = get(worker.port, f"/api/v1/summary?scope=key&id={key}&from={start:%Y-%m-%d}"
                                        f"&to={end:%Y-%m-%dT%H:00:00Z}")
        assert status == 200, body
        totals = json.loads(body)["totals"]
        assert totals["requests"] == sum(r["requests"] for r in rows)
        assert totals["input_tokens"] == sum(r["input_tokens"] for r in rows)
        assert Decimal(totals["total_cost"]) == sum(r.get("total_cost", Decimal(0)) for r in rows)
        assert get(worker.port, f"/api/v1/summary?scope=key&id={key}&from=2026-01-02&to=2026-01-01")[0] == 400

        status, body = get(worker.port, "/metrics")
        text = body.decode()
        names = set(re.findall(r"^(meterline_[a-z_]+?)(?:_bucket|_sum|_count|_created)?(?:\{| )", text, re.M))
        assert {"meterline_events_consumed_total", "meterline_events_counted_total",
                "meterline_clickhouse_write_duration_seconds", "meterline_consumer_lag_messages"} <= names
        assert "key-0" not in text  # never an API key as a label
        assert get(worker.port, "/healthz")[0] == 200
    finally:
        worker.stop()
