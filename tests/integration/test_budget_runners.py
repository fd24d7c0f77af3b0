"""Budget notifications with real runner processes (``meterline alerts run``) sharing one real ClickHouse
engine (chDB behind pipeline/chdb_server.py): a runner SIGKILLed right after claiming a notification, or
right after its channel accepted it, and then restarted; two runners at once; and a real Alertmanager built
from its Go module as the receiver.

What exactly-once means here (docs/alerts.md): a notification is claimed in ClickHouse before it is sent, so
two runners never both send it and a runner that dies before sending leaves it to the next one (after the
claim's lease). A runner that dies after the receiver accepted the notification but before it recorded that
cannot know it was delivered: the next runner sends it again with the same identity (Alertmanager labels,
PagerDuty dedup_key, webhook dedupKey), which the receivers that deduplicate turn into one notification.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.budgets.model import make_budget
from pipeline.budgets.store import BudgetStore
from pipeline.clickhouse import connect
from pipeline.migrations import Migrator
from support.alertmanager import AlertmanagerBuildError, AlertmanagerProcess, Receiver, build_alertmanager
from support.budgets import PRICES, Ledger
from support.processes import ROOT, ChdbHttpProcess, read_clickhouse
from support.writes import bounds_at, write_events

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]

LEASE_S = 4  # a dead runner's claim is taken over after this
QUIET_SPIKES = {f"METERLINE_ALERTS_{name}": "1000000000000" for name in (
    "MIN_TOKENS", "MIN_REQUESTS", "MIN_COST_USD", "NEW_KEY_TOKENS", "NEW_KEY_REQUESTS", "NEW_KEY_COST_USD")}


class RunnerProcess:
    """``meterline alerts run --interval 0.5s`` as a subprocess with its own log."""

    def __init__(self, workdir: Path, clickhouse_url: str, env: dict[str, str], name: str) -> None:
        self.log_path = workdir / f"runner-{name}.log"
        self.env = {**os.environ, **QUIET_SPIKES, "METERLINE_CLICKHOUSE_URL": clickhouse_url,
                    "METERLINE_DATA_DIR": str(workdir / name), "METERLINE_ALERTS_BUDGET_CLAIM_LEASE": f"{LEASE_S}s",
                    "METERLINE_ALERTS_DELIVERY_ATTEMPTS": "2", "METERLINE_ALERTS_DELIVERY_TIMEOUT": "1s", **env}
        self.process: subprocess.Popen | None = None

    def start(self) -> "RunnerProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "alerts", "run", "--interval",
                                             "0.5s"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        return self

    async def wait_killed(self, timeout: float = 60) -> None:
        """Until the process is gone; it must have died by SIGKILL (its failpoint)."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, f"the runner did not stop:\n{self.log_tail()}"
            await asyncio.sleep(0.1)
        assert self.process.returncode == -signal.SIGKILL, self.log_tail()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def shared_store(tmp_path):
    """A chDB engine served over HTTP, a migrated database in it, and a client of the test's own."""
    server = ChdbHttpProcess(tmp_path / "chdb").start()
    url = f"{server.url}/budgets"
    client = connect(url, create_database=True)
    Migrator(client).apply()
    yield url, client
    client.close()
    server.kill()


def cross(client, keys: list[str], amount: str = "10", spend: str = "6") -> None:
    """Monthly budgets of ``amount`` for ``keys``, each crossing its 50% threshold now (real time: runner
    processes evaluate at the current time)."""
    now = datetime.now(UTC)
    ledger = Ledger()
    for key in keys:
        BudgetStore(client).put(make_budget("key", key, "month", amount, thresholds="50"), now)
        ledger.add(key, now - timedelta(seconds=1), spend)
    now_ms = int(now.timestamp() * 1000)
    assert write_events(client, ledger.events, now_ms, partition=1, prices=PRICES, bounds=bounds_at(now_ms))[0]


async def wait_until(condition, what: str, runners: list[RunnerProcess], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        tails = "\n\n".join(r.log_tail() for r in runners)
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout}s:\n{tails}"
        await asyncio.sleep(0.2)


def log_events(url: str) -> Counter:
    return Counter(event for (event,) in read_clickhouse(url, "SELECT event FROM budget_notifications"))


def hook_alerts(receiver: Receiver) -> list[dict]:
    return [a for body in receiver.bodies for a in body["alerts"]]


async def test_a_runner_killed_after_claiming_is_taken_over_and_sends_once(shared_store, tmp_path):
    url, client = shared_store
    hook = await Receiver().start()
    runners = []
    try:
        cross(client, ["k1"])
        env = {"METERLINE_ALERTS_WEBHOOK_URL": hook.url}
        first = RunnerProcess(tmp_path, url, {**env, "METERLINE_FAILPOINTS": "budget_after_claim"}, "first").start()
        runners.append(first)
        await first.wait_killed()
        assert hook.bodies == [] and log_events(url) == {"claimed": 1}  # claimed, never sent
        second = RunnerProcess(tmp_path, url, env, "second").start()
        runners.append(second)
        await wait_until(lambda: hook.bodies, "the notification", runners)
        await asyncio.sleep(LEASE_S + 2)  # more runs, past another lease: nothing more
        assert [a["labels"]["scope_id"] for a in hook_alerts(hook)] == ["k1"]
        assert log_events(url) == {"claimed": 2, "sent": 1}  # attempt 0 (dead), attempt 1 (sent)
    finally:
        for runner in runners:
            runner.stop()
        await hook.stop()


async def test_two_runner_processes_send_each_notification_once(shared_store, tmp_path):
    url, client = shared_store
    hook = await Receiver().start()
    slack = await Receiver().start()
    env = {"METERLINE_ALERTS_WEBHOOK_URL": hook.url, "METERLINE_ALERTS_SLACK_WEBHOOK_URL": slack.url}
    runners = [RunnerProcess(tmp_path, url, env, name).start() for name in ("a", "b")]
    keys = [f"k{i}" for i in range(8)]
    try:
        await asyncio.sleep(3)  # both running their loops
        cross(client, keys)
        await wait_until(lambda: len(hook_alerts(hook)) >= 8 and len(slack.bodies) >= 8, "the notifications",
                         runners)
        await asyncio.sleep(3)  # several more runs of each
        assert sorted(a["labels"]["scope_id"] for a in hook_alerts(hook)) == keys
        assert sorted(b["text"].split()[3] for b in slack.bodies) == keys  # "[FIRING] Budget: key kN at ..."
        assert all(r.process.poll() is None for r in runners)
        assert log_events(url)["sent"] == 16
    finally:
        for runner in runners:
            runner.stop()
        await hook.stop()
        await slack.stop()


@pytest.fixture(scope="module")
def alertmanager_binary():
    try:
        return build_alertmanager()
    except AlertmanagerBuildError as error:
        pytest.skip(f"the Alertmanager binary could not be built from its Go module: {error}")


async def test_killed_after_delivery_the_resend_is_one_alert_in_a_real_alertmanager(shared_store, tmp_path,
                                                                                    alertmanager_binary):
    """The runner dies after Alertmanager and the webhook accepted the notification, before recording it. The
    restarted runner sends it again (it cannot know): the webhook sees the same dedupKey twice, Alertmanager
    holds one alert and notifies its receiver once."""
    url, client = shared_store
    hook = await Receiver().start()  # the plain webhook channel
    am_hook = await Receiver().start()  # what Alertmanager notifies
    runners = []
    try:
        with AlertmanagerProcess(alertmanager_binary, tmp_path / "am", am_hook.url) as am:
            cross(client, ["k1"])
            env = {"METERLINE_ALERTS_WEBHOOK_URL": hook.url, "METERLINE_ALERTS_ALERTMANAGER_URL": am.url}
            first = RunnerProcess(tmp_path, url, {**env, "METERLINE_FAILPOINTS": "budget_after_send"}, "first")
            runners.append(first.start())
            await first.wait_killed()
            assert len(hook_alerts(hook)) == 1 and log_events(url) == {"claimed": 2}  # 2 channels, none recorded
            second = RunnerProcess(tmp_path, url, env, "second").start()
            runners.append(second)
            await wait_until(lambda: len(hook_alerts(hook)) == 2, "the resend", runners)
            await wait_until(lambda: am_hook.bodies, "Alertmanager's notification", runners)
            await asyncio.sleep(LEASE_S + 3)  # Alertmanager groups every second: no second notification
            assert len({a["dedupKey"] for a in hook_alerts(hook)}) == 1
            held = [a for a in am.alerts() if a["labels"].get("alertname") == "MeterlineBudget"]
            assert len(held) == 1 and held[0]["labels"]["scope_id"] == "k1" and held[0]["status"]["state"] == "active"
            assert held[0]["annotations"]["summary"] == "Budget: key k1 at 60.0% of its monthly budget of $10.00 " \
                                                        "(50% threshold)"
            notified = [a for body in am_hook.bodies for a in body["alerts"] if a["status"] == "firing"]
            assert len(notified) == 1 and notified[0]["labels"]["kind"] == "threshold", am_hook.bodies
            assert log_events(url) == {"claimed": 4, "sent": 2}
    finally:
        for runner in runners:
            runner.stop()
        await hook.stop()
        await am_hook.stop()
