"""Real Redis deployments on loopback for integration tests: a cluster, a TLS-only server and a sentinel set.

Each kind is a class with ``start()``/``stop()`` that also works as a context manager::

    with RedisCluster(masters=3) as cluster:
        client = redis.asyncio.cluster.RedisCluster.from_url(cluster.url)

Everything runs as ``redis-server`` child processes of this process (``subprocess.Popen``, never daemonized,
so the leak checker sees them) on free ports of 127.0.0.1, each with a temporary directory of its own that
holds its configuration, its log and, for TLS, the certificates made at start with ``trustme``. ``stop()``
kills every process started and waits for it, then removes the temporary directory; a ``start()`` that
fails half-way does the same before it raises :class:`RedisStartError`, whose message ends with the tail
of each server's log. Starting is bounded: every wait polls against a deadline of ``START_TIMEOUT``
seconds (``AIAAS_TEST_REDIS_START_TIMEOUT``, 60 by default: generous, for a loaded two-core machine).

The session fixtures ``redis_cluster``, ``tls_redis`` and ``redis_sentinel`` start one deployment of each
kind per session (per xdist worker). They skip, naming what is missing, only when ``redis-server`` (or, for
TLS, TLS support or the ``trustme`` package) is missing, and fail instead when
``AIAAS_TEST_REQUIRE_TOOLS=1`` (as CI sets); a server that is there but cannot start fails the
test. Register them with ``pytest_plugins = ["redis_servers"]`` in the root conftest, or import them into a
deeper conftest (``from redis_servers import redis_cluster  # noqa: F401``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from support import missing_tool

HOST = "127.0.0.1"
START_TIMEOUT = float(os.environ.get("AIAAS_TEST_REDIS_START_TIMEOUT", "60"))
CLUSTER_SLOTS = 16384
LOG_TAIL_LINES = 25
# A free port is found by binding port 0 and closing the socket, so another process (an xdist worker
# starting its own servers) may take it before redis-server binds it. Such a start is retried on new ports.
_PORT_ATTEMPTS = 3
_POLL_SECONDS = 0.05


class RedisStartError(RuntimeError):
    """A Redis deployment did not start; the message ends with the tail of its servers' logs."""


class _PortTaken(RedisStartError):
    """A server could not bind its port: another process took it between our check and its bind."""


# ---------------------------------------------------------------------------------------------------------
# What this machine has


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or None if it is not installed."""
    return shutil.which("redis-server")


def redis_cli_binary() -> str | None:
    """The path of ``redis-cli``, or None if it is not installed."""
    return shutil.which("redis-cli")


@functools.cache
def redis_version() -> tuple[int, int, int]:
    """The version of the installed ``redis-server`` as (major, minor, patch)."""
    out = subprocess.run([_server_binary(), "--version"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if m is None:
        raise RedisStartError(f"cannot read the version of redis-server from {out!r}")
    return int(m[1]), int(m[2]), int(m[3])


@functools.cache
def tls_supported() -> bool:
    """Whether ``redis-server`` was built with TLS.

    Asks it to start with a TLS port but no certificate: a build with TLS refuses for want of a
    ``tls-cert-file``, one without refuses the ``tls-port`` directive itself.
    """
    with _reserved_ports(1) as ports:
        pass
    try:
        out = subprocess.run([_server_binary(), "--port", "0", "--tls-port", str(ports[0]), "--bind", HOST],
                             capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:  # it started (it should not have): run() killed it
        return False
    return "tls-cert-file" in out.stdout + out.stderr


@functools.cache
def _cli_supports_tls() -> bool:
    cli = redis_cli_binary()
    if cli is None:
        return False
    out = subprocess.run([cli, "--help"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return "--tls" in out.stdout + out.stderr


def _server_binary() -> str:
    path = redis_server_binary()
    if path is None:
        raise RedisStartError("redis-server is not installed")
    return path


# ---------------------------------------------------------------------------------------------------------
# Ports, processes and waiting


@contextlib.contextmanager
def _reserved_ports(n: int) -> Iterator[list[int]]:
    """``n`` distinct ports free on 127.0.0.1, held bound until the block ends (so none is handed out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind((HOST, 0))
        yield [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_ports(n: int) -> list[int]:
    with _reserved_ports(n) as ports:
        return ports


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``host:port`` and a server could bind it now (with SO_REUSEADDR, as
    redis-server does: the connections of a killed server may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.settimeout(1)
        if probe.connect_ex((host, port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class _Server:
    """One redis-server (or sentinel) child process, logging to a file in its own directory."""

    def __init__(self, name: str, directory: Path, argv: list[str], ports: Sequence[int]) -> None:
        self.name = name
        self.dir = directory
        self.argv = argv
        self.ports = list(ports)
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The client port (the first of ``ports``)."""
        return self.ports[0]

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            # The log is the server's stdout (no ``logfile`` directive), so configuration errors land there too.
            self.proc = subprocess.Popen(self.argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)

    def died(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def reap(self) -> None:
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(log empty)"


def _client(port: int, *, tls: _Certs | None = None, timeout: float = 5.0) -> redis.Redis:
    kwargs: dict[str, Any] = {}
    if tls is not None:
        kwargs = {"ssl": True, "ssl_ca_certs": str(tls.ca_file)}
    # No retries: the waits poll on their own, and redis-py's default retries with backoff would turn every
    # poll of a server not up yet (or dead) into seconds.
    return redis.Redis(host=HOST, port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       decode_responses=True, single_connection_client=True, retry=Retry(NoBackoff(), 0), **kwargs)


def _info_text(text: str) -> dict[str, str]:
    """``key:value`` lines (CLUSTER INFO) as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            out[key] = value
    return out


def _pairs(reply: Any) -> dict[str, Any]:
    """A map reply (SENTINEL MASTER) as a dict, whether redis-py already made it one or left it a flat
    [key, value, key, value, ...] list (RESP2, depending on the version)."""
    if isinstance(reply, dict):
        return {str(k): v for k, v in reply.items()}
    items = list(reply)
    return dict(zip(items[::2], items[1::2], strict=True))


# ---------------------------------------------------------------------------------------------------------
# TLS material


class _Certs:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, as PEM files in ``directory``."""

    def __init__(self, directory: Path) -> None:
        import trustme

        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="aiaas tests")
        cert = ca.issue_cert(HOST, "localhost")
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        ca.cert_pem.write_to_path(str(self.ca_file))
        for i, pem in enumerate(cert.cert_chain_pems):
            pem.write_to_path(str(self.cert_file), append=i > 0)
        cert.private_key_pem.write_to_path(str(self.key_file))

    def server_args(self) -> list[str]:
        return ["--tls-cert-file", str(self.cert_file), "--tls-key-file", str(self.key_file),
                "--tls-ca-cert-file", str(self.ca_file), "--tls-auth-clients", "no"]


def _url_with_ca(url: str, ca_file: Path, cert_reqs: str | None) -> str:
    query = f"ssl_ca_certs={quote(str(ca_file), safe='/')}"
    if cert_reqs is not None:
        query += f"&ssl_cert_reqs={cert_reqs}"
    return f"{url}?{query}"


# ---------------------------------------------------------------------------------------------------------
# The deployments


class _Deployment:
    """What the kinds share: a temporary directory, the servers started in it, bounded waits and teardown."""

    kind = "redis"

    def __init__(self, *, timeout: float | None = None, extra_args: Sequence[str] = ()) -> None:
        self.timeout = START_TIMEOUT if timeout is None else timeout
        self.extra_args = list(extra_args)
        self.tmp: Path | None = None
        self._servers: list[_Server] = []
        self._deadline = 0.0
        self._started = False
        self.startup_seconds: float | None = None  # how long the last start() took

    # -- public ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the deployment and wait until it serves; on any failure stop what was started, then raise."""
        if self._started:
            raise RuntimeError(f"{self.kind} already started")
        _server_binary()
        self._started = True
        began = time.monotonic()
        try:
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                self.tmp = Path(tempfile.mkdtemp(prefix=f"aiaas-{self.kind}-"))
                self._deadline = time.monotonic() + self.timeout
                try:
                    self._start()
                except _PortTaken:
                    if attempt == _PORT_ATTEMPTS:
                        raise
                    self._teardown()
                    continue
                break
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Kill every process started and wait for it, then remove the temporary directory. Idempotent."""
        self._teardown()
        self._started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """The process ids of every server started (running or not)."""
        return [s.proc.pid for s in self._servers if s.proc is not None]

    @property
    def ports(self) -> list[int]:
        """Every port the servers listen on (client ports, and cluster bus ports)."""
        return [p for s in self._servers for p in s.ports]

    # -- for the kinds -----------------------------------------------------------------------------------

    @property
    def _first(self) -> _Server:
        if not self._servers:
            raise RuntimeError(f"{self.kind} not started")
        return self._servers[0]

    def _start(self) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        servers, self._servers = self._servers, []
        for s in servers:  # kill them all first, then wait: they go down together
            s.kill()
        errors = []
        for s in servers:
            try:
                s.reap()
            except subprocess.TimeoutExpired as exc:  # pragma: no cover - SIGKILL ignored: nothing else to do
                errors.append(exc)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if errors:
            raise RuntimeError(f"{self.kind}: processes did not exit after SIGKILL: {errors}")

    def _base_args(self, port: int, directory: Path) -> list[str]:
        return [_server_binary(), "--port", str(port), "--bind", HOST, "--dir", str(directory), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--logfile", "",
                # A replica's first sync starts at once instead of after the default 5 s diskless-sync delay.
                "--repl-diskless-sync-delay", "0"]

    def _spawn(self, name: str, argv: list[str], ports: Sequence[int]) -> _Server:
        assert self.tmp is not None
        server = _Server(name, self.tmp / name, argv, ports)
        server.dir.mkdir(parents=True, exist_ok=True)
        self._servers.append(server)
        server.start()
        return server

    def _error(self, message: str, servers: Sequence[_Server] | None = None) -> RedisStartError:
        shown = self._servers if servers is None else servers
        tails = "\n".join(f"--- {s.name} (port {s.port}, {s.log}) ---\n{s.tail()}" for s in shown)
        return RedisStartError(f"{self.kind}: {message}\n{tails}")

    def _check_alive(self) -> None:
        for s in self._servers:
            status = s.died()
            if status is not None:
                err = self._error(f"{s.name} exited with status {status} while starting", [s])
                if "Address already in use" in s.tail(200):
                    raise _PortTaken(str(err))
                raise err

    def _wait(self, what: str, ready: Callable[[], bool | str]) -> None:
        """Poll ``ready`` until it returns True or the deadline passes (it may return a string saying why it
        is not ready yet, or raise: both are shown if the wait times out). Fails at once if a server died."""
        last: object = None
        while True:
            self._check_alive()
            try:
                result = ready()
            except (redis.RedisError, OSError) as exc:
                result = exc
            if result is True:
                return
            last = result
            if time.monotonic() > self._deadline:
                raise self._error(f"{what}: not within {self.timeout:.0f}s (last: {last!r})")
            time.sleep(_POLL_SECONDS)

    def _ping(self, port: int, tls: _Certs | None = None) -> bool:
        with _client(port, tls=tls, timeout=2) as c:
            return bool(c.ping())


class RedisCluster(_Deployment):
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on loopback.

    ``url`` is ``redis://127.0.0.1:<port>/0`` of one node (``rediss://`` with ``tls=True``, then
    :meth:`url_with_ca` or ``ssl_ca_certs=ca_file``); ``nodes`` every node as (host, port). The cluster is
    made with ``redis-cli --cluster create`` when there is one, otherwise with CLUSTER MEET/ADDSLOTS/REPLICATE
    (``use_redis_cli=False`` forces that). Startup returns once every node reports ``cluster_state:ok``,
    knows every other node, sees every slot served and, with replicas, every replica is in sync.
    """

    kind = "redis-cluster"

    def __init__(self, masters: int = 3, replicas: int = 0, *, tls: bool = False, node_timeout_ms: int = 15000,
                 use_redis_cli: bool | None = None, timeout: float | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(timeout=timeout, extra_args=extra_args)
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.masters = masters
        self.replicas = replicas
        self.tls = tls
        self.node_timeout_ms = node_timeout_ms
        self.use_redis_cli = use_redis_cli
        self.certs: _Certs | None = None
        self.created_with = ""

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Every node as (host, port)."""
        return [(HOST, s.port) for s in self._servers]

    @property
    def url(self) -> str:
        """``redis://`` (``rediss://`` with TLS) URL of the first node, for ``RedisCluster.from_url``."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{HOST}:{self._first.port}/0"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed the nodes' certificates (TLS only)."""
        if self.certs is None:
            raise RuntimeError("not a TLS cluster (or not started)")
        return self.certs.ca_file

    def url_with_ca(self, cert_reqs: str | None = None) -> str:
        """``url`` with ``?ssl_ca_certs=<ca_file>`` (and ``&ssl_cert_reqs=`` if given) (TLS only)."""
        return _url_with_ca(self.url, self.ca_file, cert_reqs)

    def _start(self) -> None:
        assert self.tmp is not None
        total = self.masters * (1 + self.replicas)
        own_bus_port = redis_version() >= (7, 0, 0)  # ``cluster-port``: else the bus is the port + 10000
        if self.tls:
            self.certs = _Certs(self.tmp / "tls")
        ports = _free_ports(total * 2) if own_bus_port else _ports_with_bus(total)
        for i in range(total):
            port, bus = (ports[2 * i], ports[2 * i + 1]) if own_bus_port else (ports[i], ports[i] + 10000)
            name = f"node-{i}"
            directory = self.tmp / name
            argv = self._base_args(0 if self.tls else port, directory)
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"),
                     "--cluster-node-timeout", str(self.node_timeout_ms),
                     # A replica's offset moves (and CLUSTER SLOTS lists it) with the master's pings: hurry them.
                     "--repl-ping-replica-period", "1"]
            if own_bus_port:
                argv += ["--cluster-port", str(bus)]
            if self.certs is not None:
                argv += ["--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes",
                         *self.certs.server_args()]
            self._spawn(name, argv + self.extra_args, [port, bus])
        for s in self._servers:
            self._wait(f"{s.name} answering PING", functools.partial(self._ping, s.port, self.certs))
        use_cli = self.use_redis_cli
        if use_cli is None:
            use_cli = redis_cli_binary() is not None and (not self.tls or _cli_supports_tls())
        if use_cli:
            self._create_with_cli()
        else:
            self._create_with_commands()
        self._wait("cluster_state:ok on every node", self._cluster_ready)

    def _create_with_cli(self) -> None:
        cli = redis_cli_binary()
        if cli is None:
            raise RedisStartError("redis-cli is not installed")
        assert self.tmp is not None
        argv = [cli]
        if self.certs is not None:
            argv += ["--tls", "--cacert", str(self.certs.ca_file)]
        argv += ["--cluster", "create", *(f"{h}:{p}" for h, p in self.nodes),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        log = self.tmp / "cluster-create.log"
        left = max(1.0, self._deadline - time.monotonic())
        try:
            with log.open("wb") as out:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=left, check=False)
        except subprocess.TimeoutExpired:
            raise self._error(f"redis-cli --cluster create did not finish within {left:.0f}s:\n"
                              f"{log.read_text(errors='replace')[-3000:]}") from None
        output = log.read_text(errors="replace")
        if done.returncode != 0 or "[ERR]" in output:
            raise self._error(f"redis-cli --cluster create failed ({done.returncode}):\n{output[-3000:]}")
        self.created_with = "redis-cli"

    def _create_with_commands(self) -> None:
        servers = self._servers
        clients = [_client(s.port, tls=self.certs) for s in servers]
        try:
            for epoch, c in enumerate(clients, start=1):  # distinct epochs, as redis-cli gives them
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            first = clients[0]
            for s in servers[1:]:
                bus = [s.ports[1]] if s.ports[1] != s.port + 10000 else []  # its own ``cluster-port``
                first.execute_command("CLUSTER", "MEET", HOST, s.port, *bus)
            per = CLUSTER_SLOTS // self.masters
            for i, c in enumerate(clients[: self.masters]):
                end = CLUSTER_SLOTS if i == self.masters - 1 else (i + 1) * per
                c.execute_command("CLUSTER", "ADDSLOTS", *range(i * per, end))
            total = len(servers)

            def everyone_known() -> bool | str:
                for s, c in zip(servers, clients, strict=True):
                    known = int(_info_text(c.execute_command("CLUSTER", "INFO"))["cluster_known_nodes"])
                    if known != total:
                        return f"{s.name} knows {known} of {total} nodes"
                return True

            self._wait("every node knowing every other", everyone_known)
            ids = [c.execute_command("CLUSTER", "MYID") for c in clients[: self.masters]]
            for j, c in enumerate(clients[self.masters:]):
                c.execute_command("CLUSTER", "REPLICATE", ids[j % self.masters])
        finally:
            for c in clients:
                c.close()
        self.created_with = "cluster commands"

    def _cluster_ready(self) -> bool | str:
        total = len(self._servers)
        for s in self._servers:
            with _client(s.port, tls=self.certs, timeout=2) as c:
                info = _info_text(c.execute_command("CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok":
                    return f"{s.name}: cluster_state:{info.get('cluster_state')}"
                if int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS:
                    return f"{s.name}: cluster_slots_ok:{info.get('cluster_slots_ok')}"
                if int(info.get("cluster_known_nodes", 0)) != total:
                    return f"{s.name}: cluster_known_nodes:{info.get('cluster_known_nodes')}"
                lines = [ln.split() for ln in c.execute_command("CLUSTER", "NODES").splitlines() if ln.strip()]
                flags = [set(ln[2].split(",")) for ln in lines]
                if any(f & {"handshake", "noaddr", "fail", "fail?"} for f in flags):
                    return f"{s.name}: a node not settled: {[','.join(sorted(f)) for f in flags]}"
                masters = sum(1 for ln, f in zip(lines, flags, strict=True) if "master" in f and len(ln) > 8)
                replicas = sum(1 for f in flags if "slave" in f)
                if masters != self.masters or replicas != self.masters * self.replicas:
                    return f"{s.name}: sees {masters} masters with slots, {replicas} replicas"
                mine = next(f for f in flags if "myself" in f)
                if "slave" in mine and c.info("replication").get("master_link_status") != "up":
                    return f"{s.name}: replica link not up"
                # CLUSTER SLOTS (what clients map the cluster from) leaves out a replica until its replication
                # offset, as gossiped, is past 0: wait for that, or a client sees no replicas.
                listed = _slot_replicas(c.execute_command("CLUSTER", "SLOTS"))
                if len(listed) != self.masters * self.replicas:
                    return f"{s.name}: CLUSTER SLOTS lists {len(listed)} replicas"
        return True

    def roles(self) -> dict[str, list[tuple[str, int]]]:
        """The nodes now serving as ``master`` and as ``replica``, each as (host, port)."""
        out: dict[str, list[tuple[str, int]]] = {"master": [], "replica": []}
        for host, port in self.nodes:
            with _client(port, tls=self.certs) as c:
                role = c.execute_command("ROLE")[0]
            out["replica" if role == "slave" else "master"].append((host, port))
        return out


def _slot_replicas(reply: Any) -> set[tuple[str, int]]:
    """The replicas (host, port) a CLUSTER SLOTS reply lists: entries [start, end, master, replica...]."""
    out = set()
    for entry in reply:
        for node in list(entry)[3:]:
            out.add((str(node[0]), int(node[1])))
    return out


def _ports_with_bus(n: int) -> list[int]:
    """For redis < 7 (no ``cluster-port``): ``n`` free ports whose port + 10000 is free too."""
    found: list[int] = []
    for _ in range(200):
        (port,) = _free_ports(1)
        if port + 10000 <= 65535 and port not in found and port_is_free(port + 10000):
            found.append(port)
            if len(found) == n:
                return found
    raise RedisStartError(f"found no {n} ports with a free port + 10000 for the cluster bus")


class TlsRedis(_Deployment):
    """A standalone redis-server that speaks TLS only (``--port 0``), with certificates made at start.

    Connect with ``redis.asyncio.from_url(server.url, ssl_ca_certs=str(server.ca_file))`` or with
    ``redis.asyncio.from_url(server.url_with_ca())``. Clients need no certificate (``tls-auth-clients no``).
    """

    kind = "redis-tls"

    def __init__(self, *, timeout: float | None = None, extra_args: Sequence[str] = ()) -> None:
        super().__init__(timeout=timeout, extra_args=extra_args)
        self.certs: _Certs | None = None

    @property
    def port(self) -> int:
        """The TLS port."""
        return self._first.port

    @property
    def url(self) -> str:
        """``rediss://127.0.0.1:<port>/0``."""
        return f"rediss://{HOST}:{self.port}/0"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed the server's certificate."""
        if self.certs is None:
            raise RuntimeError("not started")
        return self.certs.ca_file

    def url_with_ca(self, cert_reqs: str | None = None) -> str:
        """``url`` with ``?ssl_ca_certs=<ca_file>`` (and ``&ssl_cert_reqs=`` — ``required``/``optional``/
        ``none`` — if given), which redis-py's ``from_url`` turns into the same keyword arguments."""
        return _url_with_ca(self.url, self.ca_file, cert_reqs)

    def _start(self) -> None:
        assert self.tmp is not None
        self.certs = _Certs(self.tmp / "tls")
        (port,) = _free_ports(1)
        directory = self.tmp / "server"
        argv = [*self._base_args(0, directory), "--tls-port", str(port), *self.certs.server_args()]
        server = self._spawn("server", argv + self.extra_args, [port])
        self._wait("PING over TLS", functools.partial(self._ping, server.port, self.certs))


class RedisSentinel(_Deployment):
    """A master redis-server (and ``replicas`` replicas of it) watched by ``sentinels`` sentinel processes
    (``redis-server <conf> --sentinel``) under ``master_name`` with quorum 1 (by default).

    Connect with ``redis.asyncio.sentinel.Sentinel(deployment.sentinels).master_for(deployment.master_name)``.
    Startup returns once every sentinel reports the master up (and its replicas, and, with more than one
    sentinel, each other: what a failover needs).
    """

    kind = "redis-sentinel"

    def __init__(self, master_name: str = "aiaas", *, sentinels: int = 1, replicas: int = 0, quorum: int = 1,
                 down_after_ms: int = 5000, failover_timeout_ms: int = 60000, timeout: float | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(timeout=timeout, extra_args=extra_args)
        if sentinels < 1 or replicas < 0 or not 1 <= quorum <= sentinels:
            raise ValueError("need sentinels >= 1, replicas >= 0 and 1 <= quorum <= sentinels")
        self.master_name = master_name
        self.sentinel_count = sentinels
        self.replica_count = replicas
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def master_port(self) -> int:
        """The port of the master as started (a failover moves the role; ask a sentinel for the current one)."""
        return self._first.port

    @property
    def master_url(self) -> str:
        """``redis://127.0.0.1:<master_port>/0``, the master as started, bypassing the sentinels."""
        return f"redis://{HOST}:{self.master_port}/0"

    @property
    def replica_ports(self) -> list[int]:
        """The ports of the replicas as started."""
        return [s.port for s in self._servers if s.name.startswith("replica-")]

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """Every sentinel as (host, port), for ``redis.asyncio.sentinel.Sentinel(...)``."""
        return [(HOST, s.port) for s in self._servers if s.name.startswith("sentinel-")]

    def _start(self) -> None:
        assert self.tmp is not None
        ports = _free_ports(1 + self.replica_count + self.sentinel_count)
        master = self._spawn("master", self._base_args(ports[0], self.tmp / "master") + self.extra_args,
                             [ports[0]])
        for i in range(self.replica_count):
            port = ports[1 + i]
            argv = [*self._base_args(port, self.tmp / f"replica-{i}"), "--replicaof", HOST, str(master.port)]
            self._spawn(f"replica-{i}", argv + self.extra_args, [port])
        self._wait("master answering PING", functools.partial(self._ping, master.port))
        for s in self._servers[1:]:
            self._wait(f"{s.name} in sync with the master", functools.partial(self._replica_up, s.port))
        for i in range(self.sentinel_count):
            port = ports[1 + self.replica_count + i]
            directory = self.tmp / f"sentinel-{i}"
            directory.mkdir(parents=True)
            conf = directory / "sentinel.conf"  # a sentinel rewrites its file: it must be its own and writable
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {directory}\nlogfile \"\"\ndaemonize no\n"
                f"sentinel monitor {self.master_name} {HOST} {master.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            self._spawn(f"sentinel-{i}", [_server_binary(), str(conf), "--sentinel"], [port])
        for s in self._servers:
            if s.name.startswith("sentinel-"):
                self._wait(f"{s.name} reporting master {self.master_name!r}",
                           functools.partial(self._sentinel_ready, s.port))

    def _replica_up(self, port: int) -> bool | str:
        with _client(port, timeout=2) as c:
            status = c.info("replication").get("master_link_status")
        return True if status == "up" else f"master_link_status:{status}"

    def _sentinel_ready(self, port: int) -> bool | str:
        with _client(port, timeout=2) as c:
            state = _pairs(c.execute_command("SENTINEL", "MASTER", self.master_name))
            addr = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if state.get("flags") != "master":
            return f"flags:{state.get('flags')}"
        if addr is None or [str(a) for a in addr] != [HOST, str(self.master_port)]:
            return f"master address {addr}"
        if int(state.get("num-slaves", 0)) != self.replica_count:
            return f"num-slaves:{state.get('num-slaves')}"
        if int(state.get("num-other-sentinels", 0)) != self.sentinel_count - 1:
            return f"num-other-sentinels:{state.get('num-other-sentinels')}"
        return True


# ---------------------------------------------------------------------------------------------------------
# Fixtures


def _require_redis_server() -> None:
    if redis_server_binary() is None:
        missing_tool("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster of this session (of this xdist worker); tests share it, so use keys of your own."""
    _require_redis_server()
    with RedisCluster(masters=3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def tls_redis() -> Iterator[TlsRedis]:
    """A TLS-only redis-server of this session; tests share it, so use keys of your own."""
    _require_redis_server()
    pytest.importorskip("trustme", reason="trustme (TLS test certificates) is not installed")
    if redis_version() < (6, 0, 0) or not tls_supported():
        missing_tool("redis-server was built without TLS support")
    with TlsRedis() as server:
        yield server


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A master watched by one sentinel (master name ``aiaas``) of this session; tests share it."""
    _require_redis_server()
    with RedisSentinel() as deployment:
        yield deployment
