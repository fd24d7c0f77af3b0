"""ClickHouse access: one client per process, used from one thread.

``METERLINE_CLICKHOUSE_URL`` is either ``chdb:///path/to/dir`` (embedded ClickHouse from the chdb package)
or ``http(s)://user:pass@host:8123/db`` (a server). Both give the same clickhouse-connect Client API and run
the same SQL. An embedded data folder can be open in only one process at a time.

chdb (about 540 MB with its dependencies) is the optional ``embedded`` extra: the production image talks to a
ClickHouse server and does not ship it. Whatever opens a chdb:// URL without it gets
:class:`EmbeddedEngineMissing`, a configuration error that says how to install it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from pipeline.config import ConfigError

T = TypeVar("T")


# ClickHouse error codes that no retry can fix: the statement or the schema is wrong (a bug or a missing
# migration). Every other failure (network, timeouts, memory, disk, read-only replicas, too many parts, an
# unreachable server) is worth waiting out.
PERMANENT_ERROR_CODES = frozenset({
    1, 6, 16, 27, 36, 43, 44, 46, 47, 48, 53, 60, 62, 69, 70, 81, 115, 117, 352, 407, 456, 457,
})
_ERROR_CODE = re.compile(r"\bcode: (\d+)", re.IGNORECASE)


def is_transient(error: BaseException) -> bool:
    """Whether retrying the same call may succeed later."""
    if isinstance(error, (OperationalError, OSError)):
        return True
    if isinstance(error, DatabaseError):
        code = _ERROR_CODE.search(str(error))
        return code is None or int(code.group(1)) not in PERMANENT_ERROR_CODES
    return False


class EmbeddedStoreBusy(RuntimeError):
    """The chDB data folder is held by another process (usually a running worker)."""


EMBEDDED_INSTALL = "pip install 'meterline[embedded]'"


class EmbeddedEngineMissing(ConfigError):
    """A chdb:// URL is configured but the chdb package (the ``embedded`` extra) cannot be imported."""


def require_embedded_engine(url: str) -> None:
    """Raises :class:`EmbeddedEngineMissing` when ``url`` is a chdb:// URL and chdb cannot be imported; a
    server URL needs nothing. Importing chdb loads the engine, which any chdb:// client does next anyway."""
    if urlsplit(url).scheme != "chdb":
        return
    try:
        import chdb  # noqa: F401
    except ImportError as error:
        raise EmbeddedEngineMissing(
            f"METERLINE_CLICKHOUSE_URL {url} is embedded ClickHouse, which needs the chdb package: install it "
            f"with `{EMBEDDED_INSTALL}` (deploy/dev.sh does), or set METERLINE_CLICKHOUSE_URL to a ClickHouse "
            f"server, http(s)://user:password@host:8123/database ({type(error).__name__}: {error})") from error


def connect(url: str, create_database: bool = False) -> Client:
    """A clickhouse-connect client for ``url`` (chdb:// or http(s)://).

    The database is the ``?database=`` parameter of a chdb URL (default: ``default``), or the path of a
    server URL. ``create_database`` creates it first when missing (migrations do; readers do not).
    Raises :class:`EmbeddedEngineMissing` for a chdb URL without the chdb package, :class:`EmbeddedStoreBusy`
    when another process holds the chdb folder, ValueError for another scheme.
    """
    parts = urlsplit(url)
    if parts.scheme == "chdb":
        database = parse_qs(parts.query).get("database", ["default"])[0]
        return _connect_embedded(Path(parts.path), database)
    if parts.scheme in ("http", "https"):
        database = parts.path.strip("/") or "default"
        if create_database and database != "default":
            bootstrap = clickhouse_connect.get_client(dsn=urlunsplit(parts._replace(path="/default")))
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {_identifier(database)}")
            bootstrap.close()
        return clickhouse_connect.get_client(dsn=url, compress=False)
    raise ValueError(f"METERLINE_CLICKHOUSE_URL: unsupported scheme {parts.scheme!r} (use chdb:///dir or http(s)://...)")


def _connect_embedded(path: Path, database: str) -> Client:
    require_embedded_engine(f"chdb://{path}")
    path.mkdir(parents=True, exist_ok=True)
    try:
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    except Exception as error:  # chDB reports a held folder as a generic initialisation error
        if "EmbeddedServer" in str(error):
            raise EmbeddedStoreBusy(
                f"the embedded ClickHouse folder {path} is open in another process; stop that process "
                "(e.g. the running worker) or ask it over HTTP"
            ) from error
        raise
    if database != "default":
        # Embedded databases are cheap; tests give each one its own inside a shared folder.
        client.command(f"CREATE DATABASE IF NOT EXISTS {_identifier(database)}")
        client.database = database
    return client


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsupported database name {name!r}: use letters, digits and _")
    return f"`{name}`"


class ClickHouse:
    """A client plus the single thread all its calls run on, so blocking chDB calls stay off the event loop."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")

    @classmethod
    def open(cls, url: str, create_database: bool = False) -> "ClickHouse":
        return cls(connect(url, create_database))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def query_rows(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        result = await self.run(self.client.query, sql, parameters=parameters)
        return result.result_rows

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.client.close()
