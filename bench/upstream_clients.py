"""Upstream HTTP clients compared: the latency a bare proxy adds with each, one connection, side by side.

What the streamer's upstream client (``inference.providers.client``: aiohttp, tuned, with the gateway's
timeouts, stale-connection retry, egress and proxy rules) costs next to the alternatives. The fake OpenAI
upstream is hit directly and through one bare proxy (``_bare_proxy.py``) per client, interleaved and
rotated each round so noise hits them alike; non-streamed chat completions at concurrency 1 on 127.0.0.1,
a bounded number of requests. ``aiohttp`` is a session with aiohttp's defaults, ``aiohttp-tuned`` the
streamer's session settings without its rules. Clients not installed beside the project (pyreqwest,
rnet, aiosonic; an existing PYTHONPATH is passed on to the proxies) are skipped. Prints figures,
asserts nothing.

    python bench/upstream_clients.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import time

import aiohttp
from gateway_overhead import ROOT, free_port, pct, wait

BODY = b'{"model":"fake","messages":[{"role":"user","content":"hi"}]}'
CLIENTS = ["aiaas", "aiohttp-tuned", "aiohttp", "pyreqwest", "rnet", "aiosonic"]
BUILT_IN = ("aiaas", "aiohttp-tuned", "aiohttp")


async def measure(ports: dict[str, int], n: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in ports}
    names = list(ports)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for i in range(n + 200):
            for name in names[i % len(names):] + names[:i % len(names)]:
                t = time.perf_counter()
                async with s.post(f"http://127.0.0.1:{ports[name]}/v1/chat/completions", data=BODY,
                                  headers={"content-type": "application/json"}) as r:
                    await r.read()
                if i >= 200:  # the first 200 rounds warm every path
                    times[name].append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per client (10 to 20000)")
    n = max(10, min(ap.parse_args().requests, 20_000))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "tests"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)}
    up = free_port()
    procs = [subprocess.Popen([sys.executable, "-c",
                               f"import time, fake_upstream as f; f.FakeUpstream({up}).start(); time.sleep(3600)"],
                              env=env)]
    ports = {"direct": up}
    try:
        for client in CLIENTS:
            if client not in BUILT_IN and importlib.util.find_spec(client) is None:
                print(f"({client} not installed: skipped)")
                continue
            ports[client] = free_port()
            procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "_bare_proxy.py"),
                                           str(ports[client]), f"http://127.0.0.1:{up}/v1", client], env=env))
        for port in ports.values():
            wait(port)
        times = asyncio.run(measure(ports, n))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    d = times.pop("direct")
    print(f"\nnon-streamed, {n} requests each at concurrency 1: added to the direct request (ms)")
    print(f"{'client':15}{'p50':>9}{'p99':>9}")
    for name, xs in times.items():
        print(f"{name:15}{pct(xs, .5) - pct(d, .5):9.3f}{pct(xs, .99) - pct(d, .99):9.3f}")
    print(f"{'(direct)':15}{pct(d, .5):9.3f}{pct(d, .99):9.3f}")


if __name__ == "__main__":
    main()
