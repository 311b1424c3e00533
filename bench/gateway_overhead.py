"""Gateway-added latency and CPU: the same fake upstream hit directly, through a bare proxy and through the
streamer, run as an operator runs it (``aiaas serve --role streamer``).

Prints p50/p99 of non-streamed chat completions and of streaming TTFB (time to the first content event)
at concurrency 1, interleaving every contender so machine noise hits them alike, and each streamer's CPU
time per request. The streamer runs with a real API key, RBAC, admission, metrics, the access log and
events on (its usage queue declared, as in a deployment). The bare proxy (``_bare_proxy.py``: same
uvicorn and upstream client, nothing else) shows the floor of this stack on this machine.

``--surfaces`` also times this tree's streamer on OpenAI's Responses API and Anthropic's Messages API (the
same fake chat upstream, so the difference to its chat row is what translating costs; no CPU column for
them, since they share the chat row's process).

``--baseline REV`` adds the streamer of an earlier revision (exported from Git into a temporary directory,
with its own database, Redis and broker prefixes), so "before" and "after" are measured side by side in
one run. Targets 127.0.0.1 only and stops after a bounded number of requests.

    python bench/gateway_overhead.py [--requests 2000] [--baseline REV] [--surfaces] [--throughput SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"model":"%s","messages":[{"role":"user","content":"hi"}]%s}'
# path -> (body template, what marks the first content event of its stream)
SURFACES = {
    "/v1/chat/completions": (BODY, b'"content"'),
    "/v1/responses": (b'{"model":"%s","input":"hi","store":false%s}', b'"response.output_text.delta"'),
    "/v1/messages": (b'{"model":"%s","max_tokens":16,"messages":[{"role":"user","content":"hi"}]%s}',
                     b'"text_delta"'),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"port {port} never opened")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000


@dataclass
class Contender:
    """One thing measured: a URL, the model name it serves, and the process whose CPU is counted."""

    name: str
    port: int
    model: str = "fake"
    pid: int | None = None
    key: str = ""
    env: dict[str, str] = field(default_factory=dict)  # a streamer's own prefixes, cleaned up after the run
    cpu_ms: dict[bool, float] = field(default_factory=dict)
    path: str = "/v1/chat/completions"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


async def one(session: aiohttp.ClientSession, c: Contender, stream: bool) -> float:
    template, first_content = SURFACES[c.path]
    body = template % (c.model.encode(), b',"stream":true' if stream else b"")
    t = time.perf_counter()
    async with session.post(c.url, data=body, headers={"content-type": "application/json",
                                                       "authorization": f"Bearer {c.key}"}) as r:
        if r.status != 200:
            raise RuntimeError(f"{c.url}: {r.status} {await r.text()}")
        if stream:
            async for line in r.content:
                if line.startswith(b"data: {") and first_content in line:
                    took = time.perf_counter() - t
                    await r.read()
                    return took
        await r.read()
        return time.perf_counter() - t


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def run(n: int, contenders: list[Contender]) -> None:
    direct = contenders[0]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for stream in (False, True):
            for _ in range(200):  # warm every path (and the gateways' caches)
                for c in contenders:
                    await one(s, c, stream)
            times: dict[str, list[float]] = {c.name: [] for c in contenders}
            cpu0 = {c.name: _cpu(c.pid) for c in contenders}
            rng = random.Random(stream)
            order = list(contenders)
            for _ in range(n):
                # Shuffled each round: a streamer's after-response work (accounting, the event) still runs
                # while the next contender is timed, so any fixed order, rotated or not, taxes whichever
                # comes right after a gateway (two copies of the same code measured 0.5 ms apart at p50
                # when rotated); shuffled, every contender follows every other equally often.
                rng.shuffle(order)
                for c in order:
                    times[c.name].append(await one(s, c, stream))
            for c in contenders:
                c.cpu_ms[stream] = (_cpu(c.pid) - cpu0[c.name]) / n * 1000
            d = times[direct.name]
            label = "streaming TTFB" if stream else "non-streamed latency"
            print(f"\n{label} over {n} requests at concurrency 1 (ms; CPU: the server process's user + system)")
            print(f"{'':26}{'p50':>9}{'p99':>9}{'mean':>9}{'added p50':>11}{'added p99':>11}{'CPU/req':>9}")
            for c in contenders:
                xs = times[c.name]
                added = "" if c is direct else f"{pct(xs, .5) - pct(d, .5):11.3f}{pct(xs, .99) - pct(d, .99):11.3f}"
                cpu = f"{c.cpu_ms[stream]:9.3f}" if c.pid is not None else ""
                print(f"{c.name:26}{pct(xs, .5):9.3f}{pct(xs, .99):9.3f}{statistics.mean(xs) * 1000:9.3f}"
                      f"{added or ' ' * 22}{cpu}")


async def throughput(c: Contender, clients: int, seconds: float) -> tuple[float, int, float]:
    """Non-streamed requests per second with ``clients`` concurrent keep-alive connections, failures, and
    the server's CPU ms per request meanwhile (under load, where the events' envelopes fill)."""
    done = failed = 0
    cpu0 = _cpu(c.pid)
    stop = time.perf_counter() + seconds

    async def client(s: aiohttp.ClientSession) -> None:
        nonlocal done, failed
        while time.perf_counter() < stop:
            try:
                await one(s, c, False)
                done += 1
            except RuntimeError:
                failed += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        started = time.perf_counter()
        await asyncio.gather(*(client(s) for _ in range(clients)))
        return done / (time.perf_counter() - started), failed, (_cpu(c.pid) - cpu0) * 1000 / max(done, 1)


def _export(rev: str) -> Path:
    """The source tree of ``rev`` in a temporary directory (``git archive``: no work tree is touched)."""
    target = Path(tempfile.mkdtemp(prefix="aiaas-baseline-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def _streamer(label: str, tree: Path, up_port: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Contender]:
    """Seed a database of its own for ``tree``'s code, then ``aiaas serve --role streamer`` from it."""
    port = free_port()
    tag = f"{label}-{os.getpid()}"
    own = {**env, "PYTHONPATH": str(tree / "src"), "AIAAS_STREAMER_PORT": str(port),
           "AIAAS_LOCAL_MODEL_ENABLED": "false", "AIAAS_REDIS_PREFIX": f"bench-{tag}:",
           "AIAAS_BROKER_PREFIX": f"bench-{tag}.",
           "AIAAS_DATABASE_URL": env["AIAAS_DATABASE_URL"].rsplit("/", 1)[0] + f"/aiaas_bench_{label}"}
    key_file = Path(tempfile.mkdtemp()) / "key"
    subprocess.run([sys.executable, str(ROOT / "bench" / "_seed_for_bench.py"), f"http://127.0.0.1:{up_port}/v1",
                    str(key_file)], env=own, check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "streamer"], env=own,
                            stdout=subprocess.DEVNULL)
    wait(port)
    return proc, Contender(f"gateway ({label})", port, "bench/fake", proc.pid, key_file.read_text().strip(), own)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--baseline", metavar="REV", help="also run the streamer of this Git revision, side by side")
    ap.add_argument("--surfaces", action="store_true",
                    help="also time this tree's /v1/responses and /v1/messages (translated to the same chat upstream)")
    ap.add_argument("--throughput", type=float, default=0, metavar="SECONDS",
                    help="also measure requests/s through each gateway at --clients connections (at most 60 s)")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    n = max(10, min(args.requests, 20_000))
    up_port, bare_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}", "AIAAS_LOG_LEVEL": "WARNING"}
    env.setdefault("AIAAS_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas_bench")
    procs: list[subprocess.Popen[bytes]] = []
    trees: list[Path] = []
    prefixes: list[dict[str, str]] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", (
            f"import time, fake_upstream as f; f.FakeUpstream({up_port}).start(); time.sleep(3600)")], env=env))
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "_bare_proxy.py"), str(bare_port),
                                       f"http://127.0.0.1:{up_port}/v1"], env=env))
        wait(up_port)
        wait(bare_port)
        contenders = [Contender("direct", up_port), Contender("bare proxy", bare_port, pid=procs[1].pid)]
        if args.baseline:
            trees.append(_export(args.baseline))
            proc, c = _streamer(f"baseline-{args.baseline[:10]}", trees[-1], up_port, env)
            procs.append(proc)
            contenders.append(c)
            prefixes.append(c.env)
        proc, c = _streamer("this-tree", ROOT, up_port, env)
        procs.append(proc)
        contenders.append(c)
        prefixes.append(c.env)
        if args.surfaces:
            contenders += [Contender(f"{c.name} {path.rsplit('/', 1)[1]}", c.port, c.model, None, c.key, path=path)
                           for path in ("/v1/responses", "/v1/messages")]
        asyncio.run(run(n, contenders))
        if args.throughput > 0:
            clients, seconds = max(1, min(args.clients, 256)), min(args.throughput, 60.0)
            for c in contenders:
                if c.name == "bare proxy" or c.path != "/v1/chat/completions":
                    continue
                rps, failed, cpu = asyncio.run(throughput(c, clients, seconds))
                print(f"\nthroughput {c.name}: {rps:.0f} non-streamed requests/s at {clients} connections"
                      f" over {seconds:.0f} s ({failed} failed), CPU {cpu:.3f} ms per request")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in trees:
            shutil.rmtree(t, ignore_errors=True)
        for own in prefixes:
            asyncio.run(clean_up(own))


async def clean_up(env: dict[str, str]) -> None:
    """Delete one streamer's Redis keys, queues and exchanges (the events of the run are not consumed)."""
    import aio_pika
    from redis.asyncio import Redis

    sys.path.insert(0, str(ROOT / "src"))
    from aiaas.kernel.broker import exchange_name, queue_name
    from aiaas.kernel.config import load_settings

    settings = load_settings(env)
    redis = Redis.from_url(settings.redis_url)
    try:
        async for key in redis.scan_iter(match=env["AIAAS_REDIS_PREFIX"] + "*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()

    prefix = env["AIAAS_BROKER_PREFIX"]
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        for consumer in ("usage", "analytics"):  # every queue bound to the inference events
            queue = queue_name(prefix, consumer, "inference")
            for name in (queue, f"{queue}.dlq"):
                await ch.queue_delete(name)
            await ch.exchange_delete(f"{queue}.dlx")
        await ch.exchange_delete(exchange_name(prefix, "inference"))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
