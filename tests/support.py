"""Small helpers shared by tests of every level."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from aiaas.kernel.config import Settings

# People made by fixtures get bcrypt's lowest cost: those tests are about access, not hashing, and at the
# production cost (12, which the settings enforce) each one costs a quarter second of CPU to make and
# another to sign in. The hashing and its cost are tested on their own (tests/unit/identity).
FIXTURE_BCRYPT_ROUNDS = 4


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def missing_tool(reason: str) -> None:
    """Skip a test for a tool this machine lacks, or fail it when ``AIAAS_TEST_REQUIRE_TOOLS=1`` (as CI
    sets: there a skip would hide a test that never ran)."""
    import pytest

    if os.environ.get("AIAAS_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{reason}, and AIAAS_TEST_REQUIRE_TOOLS=1 says every tool is here")
    pytest.skip(reason)


def wait_http(url: str, *, timeout: float = 60.0, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status`` or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback test URL
                if r.status == status:
                    return
                last = r.status
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s (last: {last})")


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction of a TCP relay until it ends, then close the writer (asyncio streams)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class TcpProxy:
    """A loopback TCP proxy to cut and restore a service under a running client (an outage from the
    client's view, without touching the shared server).

    It runs on a thread and loop of its own, so it keeps relaying while the test's loop is blocked (a
    test waiting synchronously for a server it started, say). ``close()`` stops it.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        import asyncio
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=f"tcp-proxy-{self.port}")
        self._thread.start()

    async def _call(self, coro: object) -> None:
        import asyncio

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))  # type: ignore[arg-type]

    async def _start(self) -> None:
        import asyncio

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            try:
                up_r, up_w = await asyncio.open_connection(*self.target)
            except OSError:
                client_w.close()
                return
            self._writers.update({client_w, up_w})
            try:
                await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
            finally:
                self._writers.discard(client_w)
                self._writers.discard(up_w)

        self._server = await asyncio.start_server(handle, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # the listening socket closes now; open connections are reset below
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def start(self) -> None:
        """Listen and relay."""
        await self._call(self._start())

    async def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        await self._call(self._cut())

    async def restore(self) -> None:
        """Accept connections again."""
        await self._call(self._start())

    async def close(self) -> None:
        """Cut, then stop the proxy's thread."""
        if self._thread.is_alive():
            await self.cut()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once the process is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class OwnRedis:
    """A redis-server of one test on a free port, so an outage never touches the shared Redis."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# Broker prefixes handed to child processes: what those declare is not in this process's ``declared_names``,
# so the harness enumerates the platform's topology under each of them when it cleans up.
CHILD_PREFIXES: set[str] = set()


def env_of(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child ``aiaas`` process use ``settings``' services and prefixes."""
    CHILD_PREFIXES.add(settings.broker_prefix)
    env = dict(os.environ)
    for field in type(settings).__struct_fields__:
        value = getattr(settings, field)
        if value is not None:
            env[f"AIAAS_{field.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


async def dead_lettered(container: Any, queue: str, message_id: str) -> bool:
    """Whether the dead-letter queue ``queue`` (without the broker prefix) gets ``message_id`` within a
    few seconds; the messages read are acked (the test owns its queues)."""
    conn = await container.broker.connect()
    ch = await conn.channel()
    try:
        dlq = await ch.declare_queue(f"{container.settings.broker_prefix}{queue}", passive=True)
        for _ in range(50):
            msg = await dlq.get(timeout=5, fail=False)
            if msg is None:
                await asyncio.sleep(0.1)
                continue
            await msg.ack()
            if msg.message_id == message_id:
                return True
        return False
    finally:
        await ch.close()


def journey_platform(session_settings: Settings, label: str) -> tuple[Settings, dict[str, str]]:
    """Settings and environment of a journey module's own ``aiaas serve --role all``: Redis and broker
    prefixes of its own under the session's (whose clean-up removes them), no embedded model, last-used
    stamps flushed every second, quiet logs, single-process metrics."""
    tag = f"{label}{uuid.uuid4().hex[:6]}"
    settings = msgspec.structs.replace(session_settings, redis_prefix=f"{session_settings.redis_prefix}{tag}:",
                                       broker_prefix=f"{session_settings.broker_prefix}{tag}.")
    env = {**env_of(settings), "AIAAS_LOCAL_MODEL_ENABLED": "false", "AIAAS_LAST_USED_FLUSH_SECONDS": "1",
           "AIAAS_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return settings, env


@dataclasses.dataclass(frozen=True)
class Person:
    """A user a journey test made, with the password it signs in with."""

    email: str
    password: str
    user_id: str


@contextlib.contextmanager
def serving_all(env: dict[str, str], *, stdout: Any = subprocess.DEVNULL,
                workers: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    """``aiaas serve --role all`` on free ports, as an operator runs it, ready when every role answers
    ``/health``; on exit SIGTERM, then whatever is left of its process group is killed."""
    ports = {"api": free_port(), "streamer": free_port(), "worker": free_port()}
    env = {**env, "AIAAS_API_PORT": str(ports["api"]), "AIAAS_STREAMER_PORT": str(ports["streamer"]),
           "AIAAS_WORKER_PORT": str(ports["worker"])}
    args = [sys.executable, "-m", "aiaas", "serve", "--role", "all", *(["--workers", str(workers)] if workers else [])]
    proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for port in ports.values():
            wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
        yield proc, ports
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # nothing of the server's group may outlive its user
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
