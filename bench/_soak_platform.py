"""The platform ``bench/soak.py`` runs against, started and stopped as an operator would.

A fake upstream (``_soak_upstream.py``), a bench database seeded by ``_seed_for_bench.py`` (migrations,
the model ``bench/fake``, a real API key), then ``aiaas serve --role worker`` and ``aiaas serve --role
streamer``, each waited for on ``/ready``. The roles run with ``AIAAS_ENV=production`` (the upstream on
loopback allowed by ``AIAAS_UPSTREAM_EGRESS_ALLOW``, ``/metrics`` behind a token made for the run), one
process each, the embedded model off. Everything listens on 127.0.0.1, and the database, Redis and
RabbitMQ must be on loopback too.

Everything is named after the run: the database ``aiaas_bench_soak_<run>``, the Redis prefix
``bench-soak-<run>:`` and the broker prefix ``bench-soak-<run>.``. ``stop()`` ends every process this
module started (the streamer first, so it hands its last events to the broker); ``clean_up()`` drops the
database and deletes the keys, queues and exchanges. The processes get a session of their own (a Ctrl-C
reaches only the soak, which then stops them in order) and, on Linux, SIGTERM if the soak itself dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "src"))  # this tree's aiaas, as the processes it starts run it
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STOP_ORDER = ("streamer", "worker", "upstream", "seed")
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Platform:
    """One soak's processes, names and logs."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    env: dict[str, str] = field(default_factory=dict)
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aiaas-soak-")))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    streamer_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    upstream_port: int = field(default_factory=free_port)
    key: str = ""
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # production guards /metrics

    def __post_init__(self) -> None:
        base = {k: v for k, v in os.environ.items()
                if not (k.startswith("AIAAS_") and k.endswith("_DATABASE_URL") and k != "AIAAS_DATABASE_URL")}
        base.pop("PROMETHEUS_MULTIPROC_DIR", None)
        db = base.get("AIAAS_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas")
        self.env = {**base, "PYTHONPATH": str(ROOT / "src"), "AIAAS_HOST": "127.0.0.1",
                    "AIAAS_ENV": "production", "AIAAS_UPSTREAM_EGRESS_ALLOW": "127.0.0.1",
                    "AIAAS_DATABASE_URL": db.rsplit("/", 1)[0] + f"/aiaas_bench_soak_{self.run}",
                    "AIAAS_REDIS_PREFIX": f"bench-soak-{self.run}:", "AIAAS_BROKER_PREFIX": f"bench-soak-{self.run}.",
                    "AIAAS_LOCAL_MODEL_ENABLED": "false", "AIAAS_LOG_LEVEL": "WARNING", "AIAAS_WORKERS": "1",
                    "AIAAS_METRICS_TOKEN": self.metrics_token,
                    "AIAAS_STREAMER_PORT": str(self.streamer_port), "AIAAS_WORKER_PORT": str(self.worker_port)}
        self._check_loopback()

    @property
    def settings(self) -> object:
        from aiaas.kernel.config import load_settings

        return load_settings(self.env)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.streamer_port}"

    def _check_loopback(self) -> None:
        s = self.settings
        for what in ("database_url", "redis_url", "amqp_url"):
            host = urlsplit(getattr(s, what)).hostname
            if host not in LOOPBACK:
                raise SystemExit(f"soak: {what} points at {host}; this bench loads 127.0.0.1 only")

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it; closed below
        try:
            proc = subprocess.Popen([sys.executable, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            out.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, name: str, port: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready on :{port} after {timeout:.0f} s:\n{self.log_tail(name)}")

    def start(self) -> None:
        """Upstream, seed (migrations, model, key), worker, streamer; returns once each one is ready."""
        self._spawn("upstream", [str(BENCH / "_soak_upstream.py"), str(self.upstream_port)])
        key_file = self.logs / "key"
        seed = self._spawn("seed", [str(BENCH / "_seed_for_bench.py"), f"http://127.0.0.1:{self.upstream_port}/v1",
                                    str(key_file)])
        if seed.wait(300) != 0:
            raise RuntimeError(f"seeding failed ({seed.returncode}):\n{self.log_tail('seed')}")
        self.key = key_file.read_text().strip()
        self._spawn("worker", ["-m", "aiaas", "serve", "--role", "worker"])
        self._wait_ready("worker", self.worker_port)
        self._spawn("streamer", ["-m", "aiaas", "serve", "--role", "streamer"])
        self._wait_ready("streamer", self.streamer_port)

    def stop(self, name: str | None = None) -> None:
        """SIGTERM (a graceful shutdown), SIGKILL after 30 s; every process, or only ``name``."""
        for n in STOP_ORDER if name is None else (name,):
            proc = self.procs.pop(n, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"soak: {n} ignored SIGTERM for 30 s; killed", file=sys.stderr)
                proc.kill()
                proc.wait()

    async def clean_up(self) -> str:
        """Drop the bench database, delete the run's Redis keys, queues and exchanges; says what it removed.

        Each of the three is tried even when another fails; a failure is named in the answer."""
        parts = []
        for what, step in (("database", self._drop_database), ("Redis keys", self._delete_keys),
                           ("queues and exchanges", self._delete_topology)):
            try:
                parts.append(await step())
            except Exception as exc:  # keep going: the other two may still be cleaned
                parts.append(f"{what} NOT cleaned ({exc!r})")
        shutil.rmtree(self.logs, ignore_errors=True)
        return ", ".join(parts)

    async def _drop_database(self) -> str:
        import asyncpg

        url = self.env["AIAAS_DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
        name = url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
        try:
            had = bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        return f"dropped database {name}" if had else f"no database {name} to drop"

    async def _delete_keys(self) -> str:
        from redis.asyncio import Redis

        s = self.settings
        redis = Redis.from_url(s.redis_url)  # type: ignore[attr-defined]
        deleted = 0
        try:
            keys = [k async for k in redis.scan_iter(match=f"{s.redis_prefix}*", count=1000)]  # type: ignore[attr-defined]
            for i in range(0, len(keys), 500):
                deleted += await redis.delete(*keys[i:i + 500])
        finally:
            await redis.aclose()
        return f"{deleted} Redis keys deleted"

    async def _delete_topology(self) -> str:
        import aio_pika

        from aiaas.kernel.broker import exchange_name, queue_name
        from aiaas.kernel.config import CONTEXTS

        s = self.settings
        prefix = s.broker_prefix  # type: ignore[attr-defined]
        pairs = [(c, src) for c in CONTEXTS for src in CONTEXTS]
        queues = sorted({queue_name(prefix, c, src) + tail for c, src in pairs for tail in ("", ".dlq")})
        exchanges = sorted({exchange_name(prefix, c) for c in CONTEXTS}
                           | {queue_name(prefix, c, src) + ".dlx" for c, src in pairs})
        removed = {"queue": 0, "exchange": 0}
        conn = await aio_pika.connect(s.amqp_url)  # type: ignore[attr-defined]
        try:
            for kind, names in (("queue", queues), ("exchange", exchanges)):
                for n in names:
                    ch = await conn.channel()
                    try:  # a passive declare that fails closes its channel: one channel per name
                        if kind == "queue":
                            await ch.declare_queue(n, passive=True)
                            await ch.queue_delete(n)
                        else:
                            await ch.get_exchange(n, ensure=True)
                            await ch.exchange_delete(n)
                        removed[kind] += 1
                    except aio_pika.exceptions.ChannelClosed:
                        pass  # never declared in this run
                    finally:
                        if not ch.is_closed:
                            await ch.close()
        finally:
            await conn.close()
        return f"{removed['queue']} queues and {removed['exchange']} exchanges deleted"
