"""ClickHouse fixtures: real embedded ClickHouse (chDB), one engine folder per pytest process.

chDB opens one data folder per process, so every test gets its own database inside the session's folder
(``chdb:///...?database=t_xxx``). Worker subprocesses get folders of their own and are read back through
a subprocess too (see tests/integration/processes.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import connect
from pipeline.migrations import Migrator


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def clickhouse_url(chdb_dir: Path) -> str:
    """A fresh, empty database in the session's embedded ClickHouse."""
    return f"chdb://{chdb_dir}?database=t_{uuid4().hex[:12]}"


@pytest.fixture
def clickhouse(clickhouse_url: str) -> Iterator[Client]:
    """A client on a fresh database with every migration applied."""
    client = connect(clickhouse_url)
    Migrator(client).apply()
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{client.database}`")
