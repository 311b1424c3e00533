"""Run one client library's benchmark against upstream.py; prints one JSON line.
Usage: python client_worker.py {aiohttp|httpx} PORT"""
import asyncio
import json
import sys
import time

import uvloop
from loadgen import pct
from payload import BODY

LIB, PORT = sys.argv[1], int(sys.argv[2])
BASE = f"http://127.0.0.1:{PORT}"
URL = BASE + "/v1/chat/completions"
SURL = BASE + "/v1/chat/completions/stream"
HDR = {"content-type": "application/json", "authorization": "Bearer sk-test"}


def make_client(conc):
    if LIB == "aiohttp":
        import aiohttp
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc, keepalive_timeout=60))
    import httpx
    return httpx.AsyncClient(http2=False, limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
                             timeout=httpx.Timeout(30.0))


async def one(c):
    if LIB == "aiohttp":
        async with c.post(URL, data=BODY, headers=HDR) as r:
            b = await r.read()
    else:
        r = await c.post(URL, content=BODY, headers=HDR)
        b = r.content
    assert len(b) > 100


async def stream_one(c, mode, url):
    """returns (ttfc, total, n_data_events) measured from request start"""
    t0 = time.perf_counter()
    t1 = None
    n = 0
    if LIB == "aiohttp":
        async with c.post(url, data=BODY, headers=HDR) as r:
            if mode == "lines":
                async for line in r.content:
                    if line.startswith(b"data:"):
                        n += 1
                        if t1 is None:
                            t1 = time.perf_counter()
            else:  # any
                async for chunk in r.content.iter_any():
                    n += chunk.count(b"data:")
                    if t1 is None:
                        t1 = time.perf_counter()
    else:
        async with c.stream("POST", url, content=BODY, headers=HDR) as r:
            if mode == "lines":
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        n += 1
                        if t1 is None:
                            t1 = time.perf_counter()
            else:  # raw
                async for chunk in r.aiter_raw():
                    n += chunk.count(b"data:")
                    if t1 is None:
                        t1 = time.perf_counter()
    return t1 - t0, time.perf_counter() - t0, n


async def main():
    out = {"lib": LIB}
    # c=1 latency
    async with make_client(1) as c:
        for _ in range(300):
            await one(c)
        lat = []
        cpu0 = time.process_time()
        for _ in range(3000):
            t0 = time.perf_counter()
            await one(c)
            lat.append(time.perf_counter() - t0)
        out["c1_cpu_us"] = (time.process_time() - cpu0) / 3000 * 1e6
        out["c1_p50_us"], out["c1_p99_us"] = pct(lat, 50) * 1e6, pct(lat, 99) * 1e6

    # c=32 throughput
    async with make_client(32) as c:
        stop = False
        count = 0

        async def w():
            nonlocal count
            while not stop:
                await one(c)
                count += 1

        tasks = [asyncio.create_task(w()) for _ in range(32)]
        await asyncio.sleep(0.5)
        count0, t0, cpu0 = count, time.perf_counter(), time.process_time()
        await asyncio.sleep(5.0)
        n, el, cpu = count - count0, time.perf_counter() - t0, time.process_time() - cpu0
        stop = True
        await asyncio.gather(*tasks)
        out["c32_rps"] = n / el
        out["c32_cpu_us"] = cpu / n * 1e6

    # streaming: ttfc + total (fast upstream, 21 events in one write) and buffering check (5 ms gaps)
    modes = ["lines", "any" if LIB == "aiohttp" else "raw"]
    async with make_client(1) as c:
        for mode in modes:
            for _ in range(50):
                await stream_one(c, mode, SURL)
            ttfc, tot = [], []
            for _ in range(1000):
                a, b, n = await stream_one(c, mode, SURL)
                assert n == 21, n
                ttfc.append(a)
                tot.append(b)
            out[f"s_{mode}_ttfc_p50_us"] = pct(ttfc, 50) * 1e6
            out[f"s_{mode}_total_p50_us"] = pct(tot, 50) * 1e6
            out[f"s_{mode}_total_p99_us"] = pct(tot, 99) * 1e6
            sl = [await stream_one(c, mode, BASE + "/slow-stream") for _ in range(5)]
            out[f"slow_{mode}_ttfc_ms"] = pct([x[0] for x in sl], 50) * 1e3  # should be ~0, not ~100
    print(json.dumps(out))


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
