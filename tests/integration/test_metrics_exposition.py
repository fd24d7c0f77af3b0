"""The /metrics pages of real meterline processes carry no ``*_created`` series.

prometheus_client adds a ``<name>_created`` series (the start time) beside every counter and histogram unless
a process switches it off; pipeline.cli.main does that once for every command. These tests start the
commands as operators do (``python -m pipeline.cli ...``) and read what Prometheus would scrape.
"""

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.devtools.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]
METERLINE = [sys.executable, "-m", "pipeline.cli"]


def scrape(url: str, process: subprocess.Popen, until: str = "", timeout_s: float = 60) -> str:
    """The page at ``url`` once it answers and contains ``until``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                page = response.read().decode()
            if until in page:
                return page
        except (urllib.error.URLError, ConnectionError):
            pass
        assert process.poll() is None, f"the process exited: {process.stdout.read()}"
        assert time.monotonic() < deadline, f"{url} did not answer with {until!r} in {timeout_s} s"
        time.sleep(0.2)


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([*METERLINE, *command], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def series_names(exposition: str) -> set[str]:
    return {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            for line in exposition.splitlines() if line and not line.startswith("#")}


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    return {**env, "METERLINE_DATA_DIR": str(tmp_path)}


@pytest.mark.clickhouse
def test_the_alert_runner_exports_counters_without_created_series(tmp_path):
    env = {**base_env(tmp_path), "METERLINE_CLICKHOUSE_URL": f"chdb://{tmp_path / 'store'}",
           "METERLINE_ALERTS_METRICS_PORT": str(free_port()), "METERLINE_ALERTS_INTERVAL": "1h"}
    subprocess.run([*METERLINE, "migrate"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    with running(["alerts", "run"], env) as process:
        # The endpoint serves before the runner has registered its metrics: wait for them.
        exposition = scrape(f"http://127.0.0.1:{env['METERLINE_ALERTS_METRICS_PORT']}/metrics", process,
                            until="meterline_alert_run_duration_seconds_count")
    names = series_names(exposition)
    # A counter and a histogram are there (each would have had a _created series) ...
    assert {"meterline_alert_run_failures_total", "meterline_alert_run_duration_seconds_count"} <= names, names
    # ... and nothing ends in _created, nor is any TYPE line about one.
    assert not [n for n in names if n.endswith("_created")] and "_created" not in exposition


@pytest.mark.kafka
def test_the_collector_exports_counters_without_created_series(tmp_path, kafka_bootstrap):
    port = free_port()
    env = {**base_env(tmp_path), "METERLINE_KAFKA_BROKERS": kafka_bootstrap, "METERLINE_INGEST_PORT": str(port),
           "METERLINE_INGEST_TOKENS": "gateway-token", "METERLINE_USAGE_TOPIC": f"t-metrics-{port}"}
    event = json.loads((ROOT / "schemas/examples/valid/full.json").read_text())
    with running(["collect"], env) as process:
        scrape(f"http://127.0.0.1:{port}/healthz", process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/events", data=json.dumps(event).encode(), method="POST",
            headers={"Authorization": "Bearer gateway-token", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 202)
        exposition = scrape(f"http://127.0.0.1:{port}/metrics", process)
    names = series_names(exposition)
    assert {"meterline_ingest_requests_total", "meterline_ingest_events_accepted_total",
            "meterline_ingest_produce_errors_total", "meterline_ingest_produce_duration_seconds_count"} <= names, names
    assert not [n for n in names if n.endswith("_created")] and "_created" not in exposition
