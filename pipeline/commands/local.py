"""What a CLI command finds on this machine: the embedded store, opened without chDB's noise, and the
credentials the quick start keeps in the data folder.

An embedded chDB folder opens in one process only. When another process (a running worker or demo) holds
it, chDB writes its own lock error (``Code: 76. DB::Exception: Cannot lock file ...``) straight to file
descriptor 2 before Python sees an exception; a command that knows what to do about a held store (ask the
worker's HTTP API, or say so in one line) must not show that raw text first.

``meterline demo`` keeps its admin token, key-token secret and ingest token in files of the data folder
(``admin-token``, ``token-secret``, ``ingest-token``, mode 0600) so that its URLs stay valid across runs; the
CLI run against the same data folder uses them when the environment does not set its own.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from clickhouse_connect.driver.client import Client

from pipeline.clickhouse import ClickHouse, EmbeddedStoreBusy, connect
from pipeline.config import Settings

ADMIN_TOKEN_FILE = "admin-token"
TOKEN_SECRET_FILE = "token-secret"
INGEST_TOKEN_FILE = "ingest-token"


@contextmanager
def native_stderr_captured() -> Iterator[list[bytes]]:
    """Collects what native code writes to file descriptor 2 inside the block; yields a list that holds the
    bytes once the block ends (Python's own ``sys.stderr`` output inside the block is collected too)."""
    captured: list[bytes] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())


def open_client(url: str, create_database: bool = False) -> Client:
    """:func:`pipeline.clickhouse.connect` for a CLI command. Raises :class:`EmbeddedStoreBusy` without any
    raw chDB output when another process holds the folder; otherwise what chDB printed is shown as usual."""
    captured: list[bytes] = []
    try:
        with native_stderr_captured() as captured:
            client = connect(url, create_database=create_database)
    except EmbeddedStoreBusy:
        raise  # the caller explains a held store itself
    except BaseException:
        _replay(captured)
        raise
    _replay(captured)
    return client


def _replay(captured: list[bytes]) -> None:
    text = b"".join(captured)
    if text:
        sys.stderr.buffer.write(text)
        sys.stderr.flush()


def open_store(url: str, create_database: bool = False) -> ClickHouse:
    """The :class:`ClickHouse` wrapper around :func:`open_client`."""
    return ClickHouse(open_client(url, create_database))


def kept_secret(data_dir: Path, name: str, create: bool = False) -> str:
    """The secret kept in ``data_dir/name`` ('' when there is none); ``create`` makes a new random one
    (24 random bytes, URL-safe base64) readable by its owner only."""
    path = data_dir / name
    if create and not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def with_kept_credentials(settings: Settings) -> tuple[Settings, list[str]]:
    """``settings`` with the admin token and key-token secret the quick start keeps in the data folder,
    where the environment sets none; and a note when the key-token secret came from a file (a key token is
    only valid where the API runs with the same secret)."""
    api, notes = settings.api, []
    if not api.admin_token and (token := kept_secret(settings.data_dir, ADMIN_TOKEN_FILE)):
        api = replace(api, admin_token=token)
    if not api.token_secret and (secret := kept_secret(settings.data_dir, TOKEN_SECRET_FILE)):
        api = replace(api, token_secret=secret)
        notes.append(f"using the token secret kept in {settings.data_dir / TOKEN_SECRET_FILE}")
    return replace(settings, api=api), notes
