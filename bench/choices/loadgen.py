"""aiohttp-based asyncio load generator (keep-alive)."""
import asyncio
import time

import aiohttp


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


async def latency(url, method="GET", body=None, n=3000, warm=300):
    conn = aiohttp.TCPConnector(limit=1, force_close=False)
    headers = {"content-type": "application/json"} if body else None
    lat = []
    async with aiohttp.ClientSession(connector=conn) as s:
        for i in range(warm + n):
            t0 = time.perf_counter()
            async with s.request(method, url, data=body, headers=headers) as r:
                await r.read()
                assert r.status in (200, 201), r.status
            if i >= warm:
                lat.append(time.perf_counter() - t0)
    return {"p50_us": pct(lat, 50) * 1e6, "p99_us": pct(lat, 99) * 1e6, "n": n}


async def throughput(url, method="GET", body=None, conc=32, duration=5.0, warm=0.5):
    conn = aiohttp.TCPConnector(limit=conc)
    headers = {"content-type": "application/json"} if body else None
    count = 0
    counting = False
    stop = False

    async with aiohttp.ClientSession(connector=conn) as s:
        async def worker():
            nonlocal count
            while not stop:
                async with s.request(method, url, data=body, headers=headers) as r:
                    await r.read()
                if counting:
                    count += 1

        tasks = [asyncio.create_task(worker()) for _ in range(conc)]
        await asyncio.sleep(warm)
        counting = True
        t0 = time.perf_counter()
        await asyncio.sleep(duration)
        counting = False
        el = time.perf_counter() - t0
        c = count
        stop = True
        await asyncio.gather(*tasks)
    return {"rps": c / el, "n": c}


async def stream(url, n=500, warm=50):
    conn = aiohttp.TCPConnector(limit=1)
    ttfe, total = [], []
    async with aiohttp.ClientSession(connector=conn) as s:
        for i in range(warm + n):
            t0 = time.perf_counter()
            t1 = None
            events = 0
            async with s.get(url) as r:
                async for line in r.content:
                    if line.startswith(b"data:"):
                        events += 1
                        if t1 is None:
                            t1 = time.perf_counter()
            t2 = time.perf_counter()
            assert events == 20, events
            if i >= warm:
                ttfe.append(t1 - t0)
                total.append(t2 - t0)
    return {"ttfe_p50_us": pct(ttfe, 50) * 1e6, "ttfe_p99_us": pct(ttfe, 99) * 1e6,
            "total_p50_us": pct(total, 50) * 1e6, "total_p99_us": pct(total, 99) * 1e6}
