"""Without the `embedded` extra (chdb), everything that needs embedded ClickHouse says how to get it.

The production image leaves chdb out. Each command below runs in a real subprocess whose interpreter cannot
import chdb: a sitecustomize module (loaded by Python at start-up, before any meterline code) puts ``None`` in
``sys.modules["chdb"]``, which makes every ``import chdb`` raise ModuleNotFoundError exactly as a missing
package does. Nothing of meterline or clickhouse-connect is replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.clickhouse import EMBEDDED_INSTALL

ROOT = Path(__file__).resolve().parents[2]
RANGE = ["--key", "k", "--from", "2026-11-01", "--to", "2026-11-02"]


@pytest.fixture
def without_chdb(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import chdb, with a fresh data folder (default chdb:// URL)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text('import sys\nsys.modules["chdb"] = None  # as if not installed\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]),
            "METERLINE_DATA_DIR": str(tmp_path / "data")}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_blocker_really_hides_chdb(without_chdb):
    done = run(without_chdb, "-c", "import chdb")
    assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr
    assert run(without_chdb, "-c", "import clickhouse_connect, pipeline.cli").returncode == 0


@pytest.mark.parametrize("command", [
    ["migrate"], ["worker"], ["demo"], ["usage", *RANGE], ["export", *RANGE], ["api"], ["alerts", "run", "--once"],
    ["alerts", "list"],
], ids=lambda c: " ".join(c[:2]))
def test_commands_on_the_embedded_store_say_how_to_install_it(without_chdb, command):
    done = run(without_chdb, "-m", "pipeline.cli", *command)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert EMBEDDED_INSTALL in done.stderr and "METERLINE_CLICKHOUSE_URL" in done.stderr, done.stderr
    assert EMBEDDED_INSTALL == "pip install 'meterline[embedded]'"


def test_the_demo_says_so_before_starting_a_broker(without_chdb, tmp_path):
    done = run(without_chdb, "-m", "pipeline.cli", "demo")
    assert done.returncode == 2 and "starting" not in done.stdout
    assert not (tmp_path / "data").exists(), "the demo created its data folder before checking"


def test_a_server_url_does_not_need_chdb(without_chdb):
    """Production's case: with an http:// URL the engine is never imported (here nothing listens: a
    connection error, not the install hint)."""
    env = {**without_chdb, "METERLINE_CLICKHOUSE_URL": "http://meterline:x@127.0.0.1:9/meterline"}
    done = run(env, "-m", "pipeline.cli", "migrate")
    assert done.returncode != 0 and EMBEDDED_INSTALL not in done.stderr


def test_the_test_fixtures_path_raises_a_clear_error(without_chdb, tmp_path):
    """tests/integration/conftest.py's `clickhouse` fixture opens its store with pipeline.clickhouse.connect."""
    done = run(without_chdb, "-c", f"from pipeline.clickhouse import connect; connect('chdb://{tmp_path}/store')")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pipeline.clickhouse.EmbeddedEngineMissing:") and EMBEDDED_INSTALL in last, last


def test_the_development_chdb_server_says_so(without_chdb, tmp_path):
    done = run(without_chdb, "-m", "pipeline.devtools.chdb_server", "--path", str(tmp_path / "store"), "--port", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr and EMBEDDED_INSTALL in done.stderr
