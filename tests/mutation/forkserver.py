"""Runs pytest for cosmic-ray's mutants in forks of one warm process.

cosmic-ray writes a mutant into the source file and runs its test command once per mutant. A fresh
``python -m pytest`` spends seconds importing pytest, numpy, genai-prices, clickhouse-connect and chDB before a
test starts, and a module has hundreds of mutants. So the test command is this file's client, and a server per
working copy keeps those third-party modules imported and forks one child per request; the child imports
meterline itself (the mutated file included) from disk and runs pytest. Nothing of meterline is ever imported in
the server, so every child sees the source as it is at that moment.

    python tests/mutation/forkserver.py serve SOCKET ROOT [pytest args to warm up with]
    python tests/mutation/forkserver.py run SOCKET [pytest args]      # exits with pytest's exit code

The warm-up forks one child that collects the given tests; the third-party modules that collection imported
(everything outside ROOT) are then imported by the server. If the client goes away (cosmic-ray's timeout kills it),
the server kills the child's process group.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import tempfile

_HEADER = 8  # bytes of a big-endian length before each JSON message


def _send(conn: socket.socket, message: dict) -> None:
    body = json.dumps(message).encode()
    conn.sendall(len(body).to_bytes(_HEADER, "big") + body)


def _receive(conn: socket.socket) -> dict:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    return json.loads(exactly(int.from_bytes(exactly(_HEADER), "big")))


# -- the server ---------------------------------------------------------------------------------------------------

def _in_child(root: str, args: list[str], log_path: str) -> int:
    """Runs in the forked child: pytest on ``args`` from ``root``, output to ``log_path``."""
    os.setsid()  # its own process group, so a timeout kills whatever it started
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(root)
    sys.path.insert(0, root)  # the working copy's pipeline/ wins over the editable install's finder
    import pytest

    return int(pytest.main(["-p", "no:cacheprovider", *args]))


def _fork_and_wait(conn: socket.socket, root: str, args: list[str]) -> tuple[int, str]:
    fd, log_path = tempfile.mkstemp(prefix="mutation-", suffix=".log")
    os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = _in_child(root, args, log_path)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if select.select([conn], [], [], 0.05)[0] and not conn.recv(1, socket.MSG_PEEK):
            os.killpg(pid, signal.SIGKILL)  # the client was killed (cosmic-ray's timeout): stop the test run
            os.waitpid(pid, 0)
            os.unlink(log_path)
            return -1, "client gone"
    with open(log_path, encoding="utf-8", errors="replace") as log:
        output = log.read()
    os.unlink(log_path)
    return os.waitstatus_to_exitcode(status), output


def _warm_up(root: str, args: list[str]) -> None:
    """Collects ``args`` in a child and imports, here, the third-party modules that collection imported."""
    listing = tempfile.mktemp(prefix="mutation-modules-")
    code = _collect_modules(root, args, listing)
    if code != 0:
        sys.exit(f"forkserver: collecting {' '.join(args)} failed (pytest exit code {code})")
    with open(listing, encoding="utf-8") as names:
        modules = names.read().split()
    os.unlink(listing)
    for name in modules:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - a module that only imports in pytest's context: the child imports it
            pass


def _collect_modules(root: str, args: list[str], listing: str) -> int:
    """A child that collects ``args`` and writes the names of the third-party modules now imported."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.chdir(root)
            sys.path.insert(0, root)
            import pytest

            code = int(pytest.main(["-p", "no:cacheprovider", "--collect-only", "-q", *args]))
            prefix = os.path.realpath(root) + os.sep
            third_party = sorted(
                name for name, module in list(sys.modules.items())
                if not os.path.realpath(getattr(module, "__file__", None) or prefix).startswith(prefix)
                and not name.startswith(("pipeline", "agents", "schemas", "support", "conftest", "test_", "__main__")))
            with open(listing, "w", encoding="utf-8") as out:
                out.write("\n".join(third_party))
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def serve(path: str, root: str, warm_args: list[str]) -> None:
    root = os.path.realpath(root)
    _warm_up(root, warm_args)
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()
    server.settimeout(1.0)
    print(f"forkserver: ready on {path}", flush=True)
    try:
        while os.getppid() == parent:  # ends with the run that started it, however that run ended
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            with conn:
                try:
                    args = _receive(conn)["args"]
                except (ConnectionError, ValueError, KeyError):
                    continue
                code, output = _fork_and_wait(conn, root, args)
                if code != -1:
                    try:
                        _send(conn, {"code": code, "output": output})
                    except OSError:
                        pass
    finally:
        server.close()
        os.unlink(path)


# -- the client (cosmic-ray's test command) ------------------------------------------------------------------------

def run(path: str, args: list[str]) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        _send(conn, {"args": args})
        answer = _receive(conn)
    sys.stdout.write(answer["output"])
    return answer["code"]


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or [""]
    if command == "serve" and len(rest) >= 2:
        serve(rest[0], rest[1], rest[2:])
    elif command == "run" and rest:
        sys.exit(run(rest[0], rest[1:]))
    else:
        sys.exit(__doc__)
