"""A development server: one embedded ClickHouse (chDB) folder served over ClickHouse's HTTP interface.

A chDB folder opens in one process only. This process opens it and answers the subset of the HTTP
interface that clickhouse-connect speaks (queries with FORMAT, server-side parameters ``param_*``, settings
as URL parameters, ``database``, Native inserts with the data in the body), so several local processes —
two workers, a worker and the alert runner — share one real ClickHouse engine through
``METERLINE_CLICKHOUSE_URL=http://127.0.0.1:PORT``. The engine is real; only this thin front is ours.
Production uses a ClickHouse server. Run: ``python -m pipeline.devtools.chdb_server --path DIR --port 8123``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import tempfile
import uuid

from aiohttp import web

from pipeline.clickhouse import EmbeddedEngineMissing, require_embedded_engine

# URL parameters that are transport options, not ClickHouse settings.
_NOT_SETTINGS = {"query", "database", "default_format", "query_id", "session_id", "session_timeout",
                 "compress", "decompress", "user", "password", "wait_end_of_query", "client_protocol_version"}
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<format>\w+)\s*$", re.I | re.S)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ChdbHttpServer:
    def __init__(self, path: str, threads: int = 4) -> None:
        require_embedded_engine(f"chdb://{path}")  # chdb is the optional `embedded` extra
        import chdb

        self._path, self._connect = path, chdb.connect
        self._engine = chdb.connect(path)  # keeps the engine open between requests
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="chdb-http")

    def application(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/", self._handle)
        app.router.add_get("/ping", lambda request: web.Response(text="Ok.\n"))
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            # Large bound parameters arrive as form fields, the query among them.
            params.update({name: str(value) for name, value in (await request.post()).items()})
            body = b""
        else:
            body = await request.read()
        loop = asyncio.get_running_loop()
        try:
            result, fmt = await loop.run_in_executor(self._pool, self._execute, params, body)
        except Exception as error:  # the engine's message, as a ClickHouse server would send it
            message = str(error)
            code = re.search(r"Code: (\d+)", message)
            return web.Response(status=500, text=message if code else f"Code: 1000. DB::Exception: {message}",
                                headers={"X-ClickHouse-Exception-Code": code.group(1) if code else "1000"})
        summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                   "written_rows": str(result.rows_written()), "written_bytes": str(result.bytes_written())}
        return web.Response(body=result.bytes() or b"", headers={
            "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Query-Id": params.get("query_id", str(uuid.uuid4())),
            "X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Server-Display-Name": "chdb-http"})

    def _execute(self, params, body: bytes):
        handle = self._connect(self._path)  # a fresh handle: per-request USE and SET cannot leak
        try:
            database = params.get("database")
            if database:
                handle.query(f"USE `{database}`")
            for name, value in params.items():
                if name in _NOT_SETTINGS or name.startswith("param_"):
                    continue
                if not _SETTING_NAME.match(name):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting {name!r}")
                handle.query(f"SET {name} = '{_escape(value)}'")
            query, body = _split_statement(params.get("query", ""), body)
            insert = _INSERT.match(query)
            if insert and body:
                return self._insert(handle, insert, body), "TabSeparated"
            sql = (query + "\n" + body.decode()) if query and body else (query or body.decode())
            fmt = _trailing_format(sql) or params.get("default_format", "TabSeparated")
            bind = {name[len("param_"):]: value for name, value in params.items() if name.startswith("param_")}
            return handle.query(sql, fmt, params=bind), fmt
        finally:
            handle.close()

    @staticmethod
    def _insert(handle, insert: re.Match, body: bytes):
        with tempfile.NamedTemporaryFile(suffix=".data", delete=False) as data:
            data.write(body)
        try:
            sql = f"INSERT INTO {insert['target']} FROM INFILE '{_escape(data.name)}' FORMAT {insert['format']}"
            return handle.query(sql, "TabSeparated")
        finally:
            os.unlink(data.name)


def _split_statement(query: str, body: bytes) -> tuple[str, bytes]:
    """clickhouse-connect sends an insert as one body: the statement, a newline, then the data."""
    if query or not body[:6].upper() == b"INSERT":
        return query, body
    newline = body.find(b"\n")
    if newline < 0:
        return body.decode(), b""
    return body[:newline].decode(), body[newline + 1:]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _trailing_format(sql: str) -> str | None:
    match = re.search(r"\bFORMAT\s+(\w+)\s*;?\s*$", sql, re.I)
    return match.group(1) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True, help="chDB data folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    try:
        server = ChdbHttpServer(args.path)
    except EmbeddedEngineMissing as missing:
        parser.exit(2, f"pipeline.devtools.chdb_server: {missing}\n")
    web.run_app(server.application(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
