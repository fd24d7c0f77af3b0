"""Receivers for alert tests: a local HTTP receiver that records what a channel posts (and can fail on
demand), an event generator for hourly traffic, and a real Prometheus Alertmanager built once from its Go
module by deploy/alertmanager/build.sh (cached in ~/.cache/meterline/bin), started on a free port with one
webhook receiver and read through its API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web

from pipeline.devtools.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "deploy" / "alertmanager" / "build.sh"
BUILD_TIMEOUT_S = 900

CONFIG = """
route:
  receiver: meterline-test
  group_by: [alertname, api_key_id, model, metric]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: meterline-test
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


PROVIDERS = {"gpt-4o": "openai", "claude-sonnet-4-5": "anthropic"}


class Receiver:
    """A real HTTP server accepting JSON POSTs on any path; ``failing`` makes it answer 500."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.bodies: list = []  # accepted bodies, in arrival order
        self.paths: list[str] = []
        self.attempts = 0
        self.failing = False
        self._runner: web.AppRunner | None = None

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.failing:
            return web.Response(status=500, text="receiver down")
        self.bodies.append(await request.json())
        self.paths.append(request.path)
        return web.Response(status=202 if "pagerduty" in request.path else 200, text="ok")


def hour_events(key: str, model: str, start: datetime, count: int, input_tokens: int, output_tokens: int,
                until: datetime | None = None) -> list[dict]:
    """``count`` requests of one key and model spread over [start, until or start + 1 h)."""
    span = (until or start + timedelta(hours=1)) - start
    events = []
    for i in range(count):
        ts = int((start + span * i / count).timestamp() * 1000)
        events.append({"request_id": f"{key}/{model}/{ts}/{i}", "api_key_id": key, "model": model,
                       "provider": PROVIDERS[model], "timestamp": ts, "input_tokens": input_tokens,
                       "output_tokens": output_tokens})
    return events


class AlertmanagerBuildError(RuntimeError):
    pass


def build_alertmanager() -> Path:
    """The binary's path; builds it the first time (minutes), then finds it in the cache."""
    try:
        result = subprocess.run(["bash", str(BUILD_SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise AlertmanagerBuildError(f"{BUILD_SCRIPT.name} did not finish: {error}") from error
    if result.returncode != 0:
        raise AlertmanagerBuildError(f"{BUILD_SCRIPT.name} failed ({result.returncode}): {result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


class AlertmanagerProcess:
    """One Alertmanager (no clustering) with its config, data and log in ``workdir``."""

    def __init__(self, binary: Path, workdir: Path, webhook_url: str) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "alertmanager.log"
        self._webhook_url = webhook_url
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "AlertmanagerProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(CONFIG.format(webhook_url=self._webhook_url))
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [str(self.binary), f"--config.file={config}", f"--storage.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"Alertmanager did not become ready:\n{self.log_tail()}")

    def alerts(self) -> list[dict]:
        """``GET /api/v2/alerts``: the alerts Alertmanager holds and has not seen resolved."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as reply:
            return json.load(reply)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
