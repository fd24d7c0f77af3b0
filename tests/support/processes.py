"""Subprocesses for failure tests: meterline workers, the chDB HTTP server, and ClickHouse reads.

A chDB folder opens in one process at a time, so a worker's embedded store is read back through a short
subprocess once the worker is gone; a store behind the chDB HTTP server is read over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.devtools.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``meterline worker`` with its own data folder, web port and log file."""

    def __init__(self, workdir: Path, bootstrap: str, topic: str, clickhouse_url: str, group: str,
                 failpoints: str = "", flush_interval: str = "0.3s", extra_env: dict | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"worker-{self.port}.log"
        self.env = {
            **os.environ,
            "METERLINE_KAFKA_BROKERS": bootstrap, "METERLINE_USAGE_TOPIC": topic,
            "METERLINE_DLQ_TOPIC": f"{topic}.dlq", "METERLINE_GROUP_ID": group,
            "METERLINE_DATA_DIR": str(workdir / "data"), "METERLINE_CLICKHOUSE_URL": clickhouse_url,
            "METERLINE_WEB_PORT": str(self.port), "METERLINE_FLUSH_INTERVAL": flush_interval,
            "METERLINE_FAILPOINTS": failpoints, **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], cwd=ROOT, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 30) -> None:
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_positioned(self, timeout: float) -> None:
        """Until the worker has placed its partitions (or has died, e.g. at a failpoint)."""
        deadline = time.monotonic() + timeout
        while self.alive and time.monotonic() < deadline:
            status = self.status()
            if status is not None and status.get("positioned"):
                return
            time.sleep(0.2)

    def status(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/progress", timeout=2) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as response:
            text = response.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_until_counted(workers: list[WorkerProcess], last_offsets: dict[int, int], timeout: float) -> None:
    """Until the live workers together report every partition's progress at its last produced offset."""
    deadline = time.monotonic() + timeout
    progress: dict[int, int] = {}
    while time.monotonic() < deadline:
        if not any(worker.alive for worker in workers):
            break
        progress = {}
        for worker in workers:
            status = worker.status() if worker.alive else None
            for partition, offset in (status or {}).get("partitions", {}).items():
                progress[int(partition)] = max(offset, progress.get(int(partition), -1))
        if all(progress.get(p, -1) >= last for p, last in last_offsets.items()):
            return
        time.sleep(0.3)
    tails = "\n\n".join(w.log_tail() for w in workers)
    raise AssertionError(f"not counted (workers alive: {[w.alive for w in workers]}): progress {progress}, wanted {last_offsets}\n{tails}")


class ChdbHttpProcess:
    """The chDB HTTP server (pipeline/devtools/chdb_server.py) as a subprocess that can be killed and restarted."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ChdbHttpProcess":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.devtools.chdb_server", "--path", str(self.folder), "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/ping", timeout=1).read()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError("chDB HTTP server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


_READ_SCRIPT = """
import json, sys
from decimal import Decimal
from pipeline.clickhouse import connect
client = connect(sys.argv[1])
rows = client.query(sys.argv[2]).result_rows
print(json.dumps(rows, default=str))
"""


def read_clickhouse(url: str, sql: str) -> list:
    """Rows of ``sql`` at ``url``, read in a fresh process (so a chDB folder is free for this process)."""
    result = subprocess.run([sys.executable, "-c", _READ_SCRIPT, url, sql], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"reading {url} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)
