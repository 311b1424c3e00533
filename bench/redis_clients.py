"""Redis clients for the hot path: CPU and wall time per call, one caller at a time.

What each Redis call of the hot path costs with redis-py as the app configures it (``kernel.redis``),
against redis-py without timeouts or retries and other maintained clients. Contenders run interleaved in
rounds against the local Redis (127.0.0.1 only; ``AIAAS_REDIS_URL``), each doing the hot path's ``MGET`` of
three keys; CPU time is the process's, so it counts our side only (the wall time also holds the server
and the wake-ups). coredis and valkey-glide are measured when installed beside the project (``pip install
coredis valkey-glide``); neither is a dependency. Prints figures, asserts nothing, stops by itself.

    python bench/redis_clients.py [--calls 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

URL = os.environ.get("AIAAS_REDIS_URL", "redis://127.0.0.1:6379/0")
KEYS = ["bench:redis-clients:a", "bench:redis-clients:b", "bench:redis-clients:c"]


async def measure(call: Callable[[], Awaitable[Any]], n: int) -> tuple[float, float]:
    for _ in range(200):
        await call()
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await call()
    return (time.process_time() - c0) / n * 1e6, (time.perf_counter() - w0) / n * 1e6


async def contenders(stack: AsyncExitStack) -> dict[str, Callable[[], Awaitable[Any]]]:
    from redis.asyncio import Redis

    from aiaas.kernel.config import load_settings
    from aiaas.kernel.redis import make_redis

    ours = make_redis(load_settings({"AIAAS_REDIS_URL": URL}))
    lean = Redis.from_url(URL, retry=None)
    stack.push_async_callback(ours.aclose)
    stack.push_async_callback(lean.aclose)
    out: dict[str, Callable[[], Awaitable[Any]]] = {
        "redis-py, the app's settings": lambda: ours.mget(KEYS),
        "redis-py, no timeout/retry": lambda: lean.mget(KEYS),
    }
    try:
        import coredis

        core = await stack.enter_async_context(coredis.Redis.from_url(URL))
        out["coredis"] = lambda: core.mget(KEYS)
    except ImportError:
        pass
    try:
        from glide import GlideClient, GlideClientConfiguration, NodeAddress

        host, port = URL.split("//", 1)[1].split("/", 1)[0].split(":")
        glide = await GlideClient.create(GlideClientConfiguration([NodeAddress(host, int(port))]))
        stack.push_async_callback(glide.close)
        out["valkey-glide"] = lambda: glide.mget(KEYS)  # type: ignore[arg-type]
    except ImportError:
        pass
    return out


async def main(n: int, rounds: int) -> None:
    async with AsyncExitStack() as stack:
        clients = await contenders(stack)
        cpu: dict[str, list[float]] = {k: [] for k in clients}
        wall: dict[str, list[float]] = {k: [] for k in clients}
        names = list(clients)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order each round
                c, w = await measure(clients[name], n)
                cpu[name].append(c)
                wall[name].append(w)
        print(f"MGET of {len(KEYS)} keys, {n} calls x {rounds} rounds, one caller (median of rounds, us/call)")
        print(f"{'client':36}{'CPU':>8}{'wall':>8}")
        for name in names:
            print(f"{name:36}{statistics.median(cpu[name]):8.1f}{statistics.median(wall[name]):8.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import uvloop

    uvloop.run(main(max(100, min(args.calls, 100_000)), max(1, min(args.rounds, 20))))
