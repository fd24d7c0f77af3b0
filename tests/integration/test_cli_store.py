"""The CLI against a real embedded store: held by another process (as while the demo runs) it asks the
worker's HTTP API with the admin token the demo keeps, and never shows chDB's raw lock error; ``export``
counts the rows it wrote; the demo finds the key x hours it must not send again, and ``--reset`` refuses
what it must not delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.devtools.brokers import free_port
from pipeline.cli import main
from pipeline.commands.demo import reset_store, stored_history
from pipeline.config import load_settings

pytestmark = pytest.mark.clickhouse
ROOT = Path(__file__).resolve().parents[2]
RAW_CHDB = ("DB::Exception", "Code: 76", "Cannot lock file")
HOLD = """
import sys
from pipeline.clickhouse import connect
from pipeline.migrations import Migrator
client = connect("chdb://" + sys.argv[1], create_database=True)
Migrator(client).apply()
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held_store(tmp_path) -> Path:
    """A data folder whose embedded store another process holds (migrated), like a running demo's."""
    data = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(data / "clickhouse")], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        yield data
    finally:
        holder.stdin.close()
        holder.wait(60)


def cli(data: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "METERLINE_DATA_DIR": str(data), **env}, timeout=120)


class FakeWorkerApi(BaseHTTPRequestHandler):
    """Answers /api/v1/{summary,models,series,export.csv} with fixed bodies and records what was asked."""

    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        FakeWorkerApi.seen.append((self.path, self.headers.get("Authorization", "")))
        route = self.path.split("?")[0].rsplit("/", 1)[-1]
        request = {"scope": "key", "scope_id": "key_globex_chat", "start": "2026-03-01T00:00:00+00:00",
                   "end": "2026-03-02T00:00:00+00:00", "tz": "UTC", "granularity": "day"}
        status = {"has_usage": False, "state": "unknown", "message": "unknown key: never used"}
        freshness = {"counted_through": None, "lateness_bound_s": 604800}  # pipeline.usage.query.Freshness
        bodies = {"summary": {"request": request, "status": status, "freshness": freshness}, "models": {"models": []},
                  "series": {"buckets": []}}
        if route == "export.csv":
            body, kind = b"bucket_start,api_key_id\r\n2026-03-01T00:00:00+00:00,key_globex_chat\r\n", "text/csv"
        else:
            body, kind = json.dumps(bodies[route]).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cli_asks_the_running_worker_with_the_demos_admin_token_and_no_raw_lock_error(held_store, tmp_path):
    (held_store / "admin-token").write_text("demo-admin-token\n")
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), FakeWorkerApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    FakeWorkerApi.seen = []
    try:
        usage = cli(held_store, "usage", "--key", "key_globex_chat", METERLINE_WEB_PORT=str(port))
        export = cli(held_store, "export", "--key", "key_globex_chat", "--out", str(tmp_path / "u.csv"),
                     METERLINE_WEB_PORT=str(port))
    finally:
        server.shutdown()
    assert usage.returncode == 0, usage.stderr
    assert "unknown key: never used" in usage.stdout
    assert "nothing counted yet; events may arrive up to 7 d late" in usage.stdout
    assert usage.stderr.strip() == ("meterline: the embedded store is in use by another process (a running worker or "
                                    "`meterline demo`); asking the running worker's HTTP API at "
                                    f"http://127.0.0.1:{port}")
    assert export.returncode == 0, export.stderr
    assert "wrote 1 row to" in export.stderr
    assert (tmp_path / "u.csv").read_bytes().count(b"\r\n") == 2
    assert {auth for _, auth in FakeWorkerApi.seen} == {"Bearer demo-admin-token"}
    assert {path.split("?")[0] for path, _ in FakeWorkerApi.seen} == {
        "/api/v1/summary", "/api/v1/models", "/api/v1/series", "/api/v1/export.csv"}
    for result in (usage, export):
        assert not any(raw in result.stderr for raw in RAW_CHDB), result.stderr


def test_held_store_without_an_answering_worker_is_one_clear_line(held_store):
    (held_store / "admin-token").write_text("demo-admin-token")
    results = {"usage": cli(held_store, "usage", "--key", "k", METERLINE_WEB_PORT=str(free_port())),
               "alerts list": cli(held_store, "alerts", "list"),
               "migrate": cli(held_store, "migrate"),
               "worker": cli(held_store, "worker")}
    for name, result in results.items():
        assert result.returncode == 1, name
        assert not any(raw in result.stderr for raw in RAW_CHDB), (name, result.stderr)
        assert "Traceback" not in result.stderr, (name, result.stderr)
    assert "did not answer" in results["usage"].stderr
    assert "stop it to list the open alerts here" in results["alerts list"].stderr
    assert "is open in another process" in results["migrate"].stderr
    assert "is open in another process" in results["worker"].stderr
    # The demo refuses to start on it, and --reset refuses to delete it.
    demo = cli(held_store, "demo")
    assert demo.returncode == 1 and "already running" in demo.stderr
    assert not any(raw in demo.stderr for raw in RAW_CHDB)
    assert "in use by another process" in reset_store(load_settings({"METERLINE_DATA_DIR": str(held_store)}))
    assert (held_store / "clickhouse").is_dir()


def insert_usage(client, rows: list[tuple[str, datetime, str, int]]) -> None:
    """Usage rollup rows (api_key_id, hour, model, requests) as a flush would write them."""
    client.insert("rollups", [["usage", key, hour, model, "openai", requests, requests * 100, requests * 10,
                               Decimal("0.125") * requests] for key, hour, model, requests in rows],
                  column_names=["kind", "api_key_id", "hour", "model", "provider", "requests", "input_tokens",
                                "output_tokens", "total_cost"])


def test_export_says_how_many_rows_it_wrote(clickhouse, clickhouse_url, tmp_path, monkeypatch, capsys):
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None) - timedelta(hours=2)
    insert_usage(clickhouse, [("key_a", hour, "gpt-4o", 3), ("key_a", hour, "gpt-4o-mini", 2),
                              ("key_a", hour - timedelta(hours=1), "gpt-4o", 1)])
    monkeypatch.setenv("METERLINE_CLICKHOUSE_URL", clickhouse_url)
    monkeypatch.setenv("METERLINE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "usage.csv"
    assert main(["export", "--key", "key_a", "--from", "today-1", "--to", "tomorrow", "--granularity", "hour",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "meterline: wrote 3 rows to" in err
    assert out.read_text().count("\n") == 4
    assert main(["export", "--key", "key_nobody", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "wrote 0 rows" in err and "only the header" in err and "no usage for key key_nobody" in err
    assert out.read_text().count("\n") == 1
    assert main(["usage", "--key", "key_a", "--from", "today-1", "--to", "tomorrow"]) == 0
    assert "$0.75" in capsys.readouterr().out  # 6 requests x 0.125, as the page shows money


def test_demo_finds_the_key_hours_already_stored(clickhouse, clickhouse_url, tmp_path):
    settings = load_settings({"METERLINE_CLICKHOUSE_URL": clickhouse_url, "METERLINE_DATA_DIR": str(tmp_path)})
    now = datetime.now(UTC)
    this_hour = now.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    epoch_hour = int(this_hour.replace(tzinfo=UTC).timestamp()) // 3600
    insert_usage(clickhouse, [
        ("key_acme_prod", this_hour - timedelta(hours=3), "gpt-4o", 5),
        ("key_acme_prod", this_hour - timedelta(hours=3), "gpt-4o-mini", 5),  # one pair, two models
        ("key_globex_chat", this_hour - timedelta(hours=1), "claude-sonnet-4-5", 1),
        ("key_globex_chat", this_hour - timedelta(days=3), "claude-sonnet-4-5", 1),  # outside a 2-day window
        ("key_somebody_else", this_hour - timedelta(hours=1), "gpt-4o", 1),  # not a demo key
    ])
    assert stored_history(settings, days=2, now_ms=int(now.timestamp() * 1000)) == {
        ("key_acme_prod", epoch_hour - 3), ("key_globex_chat", epoch_hour - 1)}
    empty = load_settings({"METERLINE_CLICKHOUSE_URL": f"{clickhouse_url}x", "METERLINE_DATA_DIR": str(tmp_path)})
    assert stored_history(empty, days=2) == frozenset()  # no tables yet: a first run


def test_reset_deletes_only_an_embedded_store(tmp_path):
    server = load_settings({"METERLINE_CLICKHOUSE_URL": "http://default:@127.0.0.1:8123/db",
                            "METERLINE_DATA_DIR": str(tmp_path)})
    assert "ClickHouse server" in reset_store(server)
    # A store nobody holds is deleted with the demo's Kafka data (in a process of its own: chDB opens one
    # folder per process, and this one holds the session's).
    data = tmp_path / "data"
    (data / "kafka").mkdir(parents=True)
    (data / "admin-token").write_text("kept")
    script = ("import sys\nfrom pipeline.clickhouse import connect\nfrom pipeline.commands.demo import reset_store\n"
              "from pipeline.config import load_settings\n"
              "connect('chdb://' + sys.argv[1] + '/clickhouse').close()\n"
              "print(reset_store(load_settings({'METERLINE_DATA_DIR': sys.argv[1]})))")
    done = subprocess.run([sys.executable, "-c", script, str(data)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "None", done.stderr
    assert not (data / "clickhouse").exists() and not (data / "kafka").exists()
    assert (data / "admin-token").read_text() == "kept"
