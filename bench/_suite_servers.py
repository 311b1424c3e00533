"""The processes ``bench/suite.py`` measures: the mock upstream, aiaas run as an operator runs it (api,
worker and streamers with a seeded key that has a rate limit and the org a policy with limits and quotas)
and LiteLLM's proxy from its own virtualenv. Each server runs in a process group of its own and is
stopped with everything it started; the aiaas stack has a database, Redis prefix and broker prefix of
its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# The newest release whose ``proxy`` extra installs the proxy's own dependencies; later ones move them to a
# separate ``litellm-proxy`` distribution that the package index used here does not serve.
LITELLM_VERSION = "1.100.5"
RUN_ENV = "AIAAS_BENCH_SUITE_RUN"  # set on every process the suite starts, so leftovers can be found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> int:
    """The status ``url`` answers with (0 when nothing answers)."""
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback only
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return 0


def http_json(method: str, url: str, headers: dict[str, str], body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - loopback only
                                 headers={**headers, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback only
        return json.loads(r.read() or b"null")


@dataclass
class Server:
    """One process group the suite started."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path | None = None

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def wait_ready(self, path: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}{self._tail()}")
            if http_status(f"http://127.0.0.1:{self.port}{path}", timeout=2) == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready on port {self.port} after {timeout:.0f} s{self._tail()}")

    def tail(self, n: int = 3) -> str:
        """The last lines of the server's output, on one line."""
        if self.log is None or not self.log.exists():
            return ""
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-n:])[:400]

    def _tail(self) -> str:
        got = self.tail()
        return f": {got}" if got else ""

    def stop(self) -> None:
        """SIGTERM to the leader (it stops its own workers), then SIGKILL to whatever is left of the group."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@dataclass
class Stack:
    """Everything started for one run; ``close`` stops and deletes all of it."""

    run: str
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aiaas-suite-")))
    servers: list[Server] = field(default_factory=list)
    aiaas_env: dict[str, str] | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str], port: int) -> Server:
        log = self.tmp / f"{name.replace(' ', '_')}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env={**env, RUN_ENV: self.run}, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.tmp, start_new_session=True)
        server = Server(name, proc, port, log)
        self.servers.append(server)
        return server

    def close(self, keep_logs: Path | None = None) -> None:
        for s in reversed(self.servers):
            s.stop()
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self.tmp.glob("*.log"):
                shutil.copy(log, keep_logs / log.name)
        if self.aiaas_env is not None:
            asyncio.run(_drop_aiaas_state(self.aiaas_env))
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_upstream(stack: Stack, *, chunks: int, gap_ms: float, slow_seconds: float) -> Server:
    port = free_port()
    return stack.spawn("upstream", [sys.executable, str(BENCH / "_suite_upstream.py"), str(port), str(chunks),
                                    str(gap_ms), str(slow_seconds)], dict(os.environ), port)


# --- aiaas ---


def aiaas_env(run: str, tmp: Path) -> dict[str, str]:
    """The environment of every aiaas process of this run: its own database, Redis and broker prefixes,
    no embedded model, metrics shared by forked workers in a directory of the run."""
    base = os.environ.get("AIAAS_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AIAAS_LOCAL_MODEL_ENABLED": "false",
           "AIAAS_DATABASE_URL": base.rsplit("/", 1)[0] + f"/aiaas_bench_{run}",
           "AIAAS_REDIS_PREFIX": f"bench-{run}:", "AIAAS_BROKER_PREFIX": f"bench-{run}.",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom")}
    for name in ("AIAAS_API_PORT", "AIAAS_STREAMER_PORT", "AIAAS_WORKER_PORT", "AIAAS_WORKERS"):
        env.pop(name, None)
    return env


@dataclass
class Aiaas:
    """The running aiaas stack: streamers by process count, the api and worker, the keys."""

    streamers: dict[int, Server]
    api: Server
    worker: Server
    inference_key: str
    admin_key: str
    org_id: str
    database_url: str


# Far above what the bench sends in any minute or month, so nothing is refused, yet every request is
# admitted against them (RPM and TPM windows of the key and the org, the org's token budget and spend limit).
KEY_LIMITS = {"rpm_limit": 10_000_000, "tpm_limit": 2_000_000_000}
ORG_POLICY = {"rpm_limit": 10_000_000, "tpm_limit": 2**40, "monthly_token_budget": 10**13,
              "monthly_spend_limit_usd": "1000000", "default_max_tokens": 4096}


def start_aiaas(stack: Stack, upstream: Server, processes: list[int]) -> Aiaas:
    """Seed the run's database (``_seed_for_bench.py``: catalog model ``bench/fake`` on the mock, priced, an
    admin key; ``aiaas apply -f`` adds ``bench/slow``), start ``aiaas serve`` as api, worker and one streamer
    per process count, then, through the api as an operator would, put limits and quotas on the org and
    issue the inference key with limits of its own."""
    env = aiaas_env(stack.run, stack.tmp)
    stack.aiaas_env = env
    (stack.tmp / "prom").mkdir(exist_ok=True)
    key_file = stack.tmp / "admin-key"
    seeded = subprocess.run([sys.executable, str(BENCH / "_seed_for_bench.py"), f"http://127.0.0.1:{upstream.port}/v1",
                             str(key_file)], env={**env, "PYTHONPATH": f"{BENCH}:{env['PYTHONPATH']}",
                                                  RUN_ENV: stack.run},
                            capture_output=True, text=True, timeout=300, check=False)
    if seeded.returncode:
        raise RuntimeError(f"seeding failed: {seeded.stderr.strip().splitlines()[-1:]}")
    admin_key = key_file.read_text().strip()
    serve = [sys.executable, "-m", "aiaas", "serve", "--role"]
    api_port, worker_port = free_port(), free_port()
    api = stack.spawn("aiaas api", [*serve, "api"], {**env, "AIAAS_API_PORT": str(api_port)}, api_port)
    worker = stack.spawn("aiaas worker", [*serve, "worker"], {**env, "AIAAS_WORKER_PORT": str(worker_port)},
                         worker_port)
    streamers: dict[int, Server] = {}
    for n in processes:
        port = free_port()
        streamers[n] = stack.spawn(f"aiaas streamer x{n}", [*serve, "streamer", "--workers", str(n)],
                                   {**env, "AIAAS_STREAMER_PORT": str(port)}, port)
    # The held-open streams' model, declared as an operator declares a catalog (JSON is YAML).
    catalog = stack.tmp / "catalog.yaml"
    catalog.write_text(json.dumps({"models": [{"name": "bench/slow", "capabilities": ["chat"], "deployments": [
        {"name": "slow", "upstream_model": "slow", "base_url": f"http://127.0.0.1:{upstream.port}/v1"}]}]}))
    applied = subprocess.run([sys.executable, "-m", "aiaas", "apply", "-f", str(catalog)],
                             env={**env, RUN_ENV: stack.run}, capture_output=True, text=True, timeout=120, check=False)
    if applied.returncode:
        raise RuntimeError(f"aiaas apply failed: {applied.stderr.strip().splitlines()[-1:]}")
    for s in (api, worker, *streamers.values()):
        s.wait_ready("/ready")
    base = f"http://127.0.0.1:{api_port}"
    auth = {"authorization": f"Bearer {admin_key}"}
    orgs = http_json("GET", f"{base}/v1/orgs", auth)
    org_id = next(o["id"] for o in orgs["data"] if o["name"] == "bench")  # type: ignore[index]
    http_json("PUT", f"{base}/v1/orgs/{org_id}/usage-policy", auth, ORG_POLICY)
    made = http_json("POST", f"{base}/v1/orgs/{org_id}/keys", auth,
                     {"name": "bench-inference", "scopes": ["inference"], **KEY_LIMITS})
    return Aiaas(streamers, api, worker, made["key"], admin_key, org_id, env["AIAAS_DATABASE_URL"])  # type: ignore[index]


async def _drop_aiaas_state(env: dict[str, str]) -> None:
    """Delete the run's database, Redis keys, queues and exchanges."""
    import aio_pika
    import asyncpg
    from redis.asyncio import Redis

    sys.path.insert(0, str(ROOT / "src"))
    from aiaas.kernel.broker import exchange_name, queue_name
    from aiaas.kernel.config import CONTEXTS, load_settings

    settings = load_settings(env)
    url = settings.database_url.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = Redis.from_url(settings.redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{settings.redis_prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i:i + 500])
    finally:
        await redis.aclose()
    prefix = settings.broker_prefix
    queues = {queue_name(prefix, c, s) for c in CONTEXTS for s in CONTEXTS}
    exchanges = {exchange_name(prefix, c) for c in CONTEXTS} | {f"{q}.dlx" for q in queues}
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        for kind, name in [("q", q) for q in sorted(queues | {f"{q}.dlq" for q in queues})] + \
                [("x", x) for x in sorted(exchanges)]:
            if ch.is_closed:
                ch = await conn.channel()
            with contextlib.suppress(Exception):  # never declared in this run: nothing to delete
                await (ch.queue_delete(name) if kind == "q" else ch.exchange_delete(name))
    finally:
        await conn.close()


# --- LiteLLM ---


def litellm_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "aiaas" / "bench-litellm-venv"


MARKER = ".aiaas-bench-complete"  # written last: a venv without it is a half-finished install


def litellm_installed(venv: Path) -> str | None:
    """The LiteLLM version a finished install in ``venv`` holds, if any."""
    marker = venv / MARKER
    return marker.read_text().strip() or None if marker.exists() else None


def ensure_litellm(venv: Path) -> str:
    """LiteLLM's proxy at the pinned version in its own virtualenv, made on first use (``python -m venv``
    and pip, from the package index pip is configured with). Returns the installed version."""
    if litellm_installed(venv) == LITELLM_VERSION:
        return LITELLM_VERSION
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} (first use; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                          f"litellm[proxy]=={LITELLM_VERSION}"], capture_output=True, text=True, timeout=1800,
                         check=False)
    if pip.returncode:
        shutil.rmtree(venv, ignore_errors=True)
        errors = [ln for ln in pip.stderr.splitlines() if ln.startswith("ERROR")] or pip.stderr.splitlines()[-1:]
        raise RuntimeError(f"pip install litellm[proxy]=={LITELLM_VERSION} failed: {' '.join(errors)[:300]}")
    got = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    (venv / MARKER).write_text(got)
    return got


@dataclass(frozen=True)
class LiteLLM:
    servers: dict[int, Server]
    master_key: str


def start_litellm(stack: Stack, venv: Path, upstream: Server, workers: list[int]) -> LiteLLM:
    """``litellm --config ... --port ... --num_workers N`` for each N, pointed at the mock, with a master key
    and no database (its environment carries no ``DATABASE_URL``), the cost map read from the package (no
    fetch) and telemetry off. Returns at once: ``wait_litellm`` waits until they answer."""
    master = f"sk-bench-{secrets.token_hex(12)}"
    api_base = f"http://127.0.0.1:{upstream.port}/v1"
    config = stack.tmp / "litellm.yaml"
    models = [{"model_name": name, "litellm_params": {"model": f"openai/{up}", "api_base": api_base, "api_key": "x"}}
              for name, up in (("bench-fake", "fake"), ("bench-slow", "slow"))]
    config.write_text(json.dumps({"model_list": models, "general_settings": {"master_key": master}}))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_HOST", "REDIS_URL", "PYTHONPATH")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    servers = {}
    for n in workers:
        port = free_port()
        servers[n] = stack.spawn(f"litellm x{n}", [str(venv / "bin" / "litellm"), "--config", str(config), "--host",
                                                  "127.0.0.1", "--port", str(port), "--num_workers", str(n),
                                                  "--telemetry", "False"], env, port)
    return LiteLLM(servers, master)


def wait_litellm(litellm: LiteLLM) -> None:
    for s in litellm.servers.values():
        s.wait_ready("/health/liveliness", timeout=180)


def versions(litellm: str | None) -> dict[str, str]:
    """What ran: aiaas's revision, LiteLLM's version, Python and the client libraries, the machine."""
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    cpu = "unknown"
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return {"aiaas": rev + (" (work tree with uncommitted changes)" if dirty else ""),
            "LiteLLM": litellm or "not run",
            "Python": sys.version.split()[0],
            "aiohttp / uvloop (client and mock)": f"{importlib.metadata.version('aiohttp')} / "
                                                  f"{importlib.metadata.version('uvloop')}",
            "machine": f"{os.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
                       f"{os.uname().sysname} {os.uname().release}; load average (1/5/15 min) at the end {load}"}
