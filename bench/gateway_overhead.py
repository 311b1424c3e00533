"""Gateway-added latency: the same fake upstream hit directly, through a bare proxy and through the streamer.

Prints p50/p99 of non-streamed chat completions and of streaming TTFB (time to the first content event)
at concurrency 1, interleaving the three so machine noise hits them alike. The streamer runs with a real
API key, RBAC, admission, metrics, the access log and events on (its usage queue declared, as in a
deployment). The bare proxy (``_bare_proxy.py``: same uvicorn and aiohttp settings, nothing else) shows
the floor of this stack on this machine. Targets 127.0.0.1 only and stops after a bounded number of
requests.

    AIAAS_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas_bench \\
        python bench/gateway_overhead.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BODY = b'{"model":"%s","messages":[{"role":"user","content":"hi"}]%s}'


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


KEY: list[str] = [""]


async def one(session: aiohttp.ClientSession, url: str, model: str, stream: bool) -> float:
    body = BODY % (model.encode(), b',"stream":true' if stream else b"")
    t = time.perf_counter()
    async with session.post(url, data=body, headers={"content-type": "application/json",
                                                     "authorization": f"Bearer {KEY[0]}"}) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: {r.status} {await r.text()}")
        if stream:
            async for line in r.content:
                if line.startswith(b"data: {") and b'"content"' in line:
                    took = time.perf_counter() - t
                    await r.read()
                    return took
        await r.read()
        return time.perf_counter() - t


async def run(n: int, upstream_port: int, bare_port: int, gateway_port: int) -> None:
    direct = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    bare = f"http://127.0.0.1:{bare_port}/v1/chat/completions"
    gateway = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for stream in (False, True):
            for _ in range(200):  # warm every path (and the gateway's caches)
                await one(s, direct, "fake", stream)
                await one(s, bare, "fake", stream)
                await one(s, gateway, "bench/fake", stream)
            d: list[float] = []
            b: list[float] = []
            g: list[float] = []
            for _ in range(n):
                d.append(await one(s, direct, "fake", stream))
                b.append(await one(s, bare, "fake", stream))
                g.append(await one(s, gateway, "bench/fake", stream))
            label = "streaming TTFB" if stream else "non-streamed latency"
            print(f"\n{label} over {n} requests at concurrency 1 (ms)")
            print(f"{'':22}{'p50':>9}{'p99':>9}{'mean':>9}")
            for name, xs in (("direct", d), ("bare proxy", b), ("gateway", g)):
                print(f"{name:22}{pct(xs, .5):9.3f}{pct(xs, .99):9.3f}{statistics.mean(xs) * 1000:9.3f}")
            for name, xs in (("added by bare proxy", b), ("added by gateway", g)):
                print(f"{name:22}{pct(xs, .5) - pct(d, .5):9.3f}{pct(xs, .99) - pct(d, .99):9.3f}"
                      f"{(statistics.mean(xs) - statistics.mean(d)) * 1000:9.3f}")


async def throughput(url: str, model: str, clients: int, seconds: float) -> tuple[float, int]:
    """Non-streamed requests per second with ``clients`` concurrent keep-alive connections, and failures."""
    done = failed = 0
    stop = time.perf_counter() + seconds

    async def client(s: aiohttp.ClientSession) -> None:
        nonlocal done, failed
        while time.perf_counter() < stop:
            try:
                await one(s, url, model, False)
                done += 1
            except RuntimeError:
                failed += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        started = time.perf_counter()
        await asyncio.gather(*(client(s) for _ in range(clients)))
        return done / (time.perf_counter() - started), failed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--throughput", type=float, default=0, metavar="SECONDS",
                    help="also measure requests/s through the gateway at --clients connections (at most 60 s)")
    ap.add_argument("--clients", type=int, default=32)
    args = ap.parse_args()
    n = max(10, min(args.requests, 20_000))
    up_port, bare_port, gw_port = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}", "AIAAS_LOG_LEVEL": "WARNING"}
    env.setdefault("AIAAS_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas_bench")
    # The run's own Redis and broker prefixes, cleaned up afterwards. Nothing settles the run's quota
    # reservations (no worker runs here), and carried over from run to run they would make later runs
    # slower than production; the streamer declares its usage queue, as in a deployment.
    env.setdefault("AIAAS_REDIS_PREFIX", f"bench-{os.getpid()}:")
    env.setdefault("AIAAS_BROKER_PREFIX", f"bench-{os.getpid()}.")
    upstream = subprocess.Popen([sys.executable, "-c", (
        f"import time, fake_upstream as f; f.FakeUpstream({up_port}).start(); time.sleep(3600)")], env=env)
    bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_bare_proxy.py"), str(bare_port),
                             f"http://127.0.0.1:{up_port}/v1"], env=env)
    key_file = Path(tempfile.mkdtemp()) / "key"
    gw = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_streamer_for_bench.py"), str(gw_port),
                           f"http://127.0.0.1:{up_port}/v1", str(key_file)], env=env, stdout=subprocess.DEVNULL)
    try:
        wait(up_port)
        wait(bare_port)
        wait(gw_port)
        KEY[0] = key_file.read_text().strip()
        asyncio.run(run(n, up_port, bare_port, gw_port))
        if args.throughput > 0:
            clients, seconds = max(1, min(args.clients, 256)), min(args.throughput, 60.0)
            for name, port, model in (("direct", up_port, "fake"), ("gateway", gw_port, "bench/fake")):
                rps, failed = asyncio.run(throughput(f"http://127.0.0.1:{port}/v1/chat/completions", model,
                                                     clients, seconds))
                print(f"\nthroughput {name}: {rps:.0f} non-streamed requests/s at {clients} connections"
                      f" over {seconds:.0f} s ({failed} failed)")
    finally:
        for p in (gw, bare, upstream):
            p.terminate()
            p.wait(10)
        asyncio.run(clean_up(env))


async def clean_up(env: dict[str, str]) -> None:
    """Delete the run's Redis keys, queues and exchanges (the events of the run are not consumed)."""
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
    queue = queue_name(prefix, "usage", "inference")
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        for name in (queue, f"{queue}.dlq"):
            await ch.queue_delete(name)
        for name in (f"{queue}.dlx", exchange_name(prefix, "inference")):
            await ch.exchange_delete(name)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
