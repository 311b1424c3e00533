"""Garbage-collection pauses and event-loop lag of the streamer under load, with and without the heap frozen.

Two streamers run as an operator runs them (``aiaas serve --role streamer``, a real key, the same fake
upstream), one with ``AIAAS_GC_FREEZE=true`` (the default) and one with it off. Each gets the same
closed-loop load (``--clients`` keep-alive connections, non-streamed and streamed chat in turn) in
alternating rounds of ``--seconds``; then each one's ``/metrics`` is read: every collection's pause by
generation (``aiaas_gc_pause_seconds``) and the loop lag sampled every 100 ms
(``aiaas_event_loop_lag_seconds``), as counts above 1, 2 and 5 ms and the largest bucket reached.
Each pause is reported twice: its duration, and its CPU time (``aiaas_gc_pause_cpu_seconds``); on a
shared machine the difference is the time other processes held the core meanwhile.

``--thresholds 700,10,10:5000,10,10`` compares frozen streamers with those collector thresholds
(``AIAAS_GC_THRESHOLDS``, one streamer each) instead of frozen against unfrozen. Targets 127.0.0.1 only;
stops by itself.

    python bench/runtime_pauses.py [--seconds 20] [--rounds 3] [--clients 16] [--thresholds A,B,C:D,E,F]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
from gateway_overhead import Contender, _streamer, clean_up, free_port, one, wait

ROOT = Path(__file__).resolve().parent.parent


def _samples(port: int) -> list[tuple[str, dict[str, str], float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = []
    for line in text.splitlines():
        if not line.startswith(("aiaas_gc_pause_seconds_bucket", "aiaas_gc_pause_cpu_seconds_bucket",
                                "aiaas_event_loop_lag_seconds_bucket")):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, raw = name_labels.partition("{")
        labels = dict(kv.split("=", 1) for kv in raw.rstrip("}").split(",") if kv)
        out.append((name, {k: v.strip('"') for k, v in labels.items()}, float(value)))
    return out


def summary(port: int) -> dict[str, str]:
    rows: dict[str, str] = {}
    buckets: dict[str, dict[float, float]] = {}
    for name, labels, value in _samples(port):
        cpu = " (CPU)" if name.startswith("aiaas_gc_pause_cpu") else ""
        series = "loop lag" if name.startswith("aiaas_event_loop") else f"gc gen {labels.get('generation')}{cpu}"
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        buckets.setdefault(series, {})[le] = value
    for series, b in sorted(buckets.items()):
        total = b[float("inf")]
        over = {ms: total - b.get(ms / 1000, total) for ms in (1, 2, 5)}
        reached = max((le for le, v in b.items() if v < total), default=0.0)
        worst = "≤ 0.1 ms" if reached == 0.0 else f"> {reached * 1000:g} ms"
        rows[series] = (f"{int(total):>8} {int(over[1]):>8} {int(over[2]):>8} {int(over[5]):>8}   {worst}")
    return rows


async def load(c: Contender, clients: int, seconds: float) -> int:
    done = 0
    stop = time.perf_counter() + seconds

    async def client(s: aiohttp.ClientSession, stream: bool) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await one(s, c, stream)
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as s:
        await asyncio.gather(*(client(s, i % 2 == 1) for i in range(clients)))
    return done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--thresholds", default="", help="colon-separated gen0,gen1,gen2 triples: a frozen streamer each")
    args = ap.parse_args()
    seconds, rounds, clients = min(args.seconds, 120), max(1, min(args.rounds, 10)), max(1, min(args.clients, 128))
    up_port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT / 'src'}", "AIAAS_LOG_LEVEL": "WARNING"}
    env.setdefault("AIAAS_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/aiaas_bench")
    procs: list[subprocess.Popen[bytes]] = []
    contenders: list[Contender] = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", (
            f"import time, fake_upstream as f; f.FakeUpstream({up_port}).start(); time.sleep(3600)")], env=env))
        wait(up_port)
        variants = ([(f"gc-{t.replace(',', '-')}", {"AIAAS_GC_FREEZE": "true", "AIAAS_GC_THRESHOLDS": t})
                     for t in args.thresholds.split(":") if t] if args.thresholds else
                    [("gc-frozen", {"AIAAS_GC_FREEZE": "true"}), ("gc-unfrozen", {"AIAAS_GC_FREEZE": "false"})])
        for label, extra in variants:
            proc, c = _streamer(label, ROOT, up_port, {**env, **extra})
            procs.append(proc)
            contenders.append(c)
        served = {c.name: 0 for c in contenders}
        for _ in range(rounds):
            for c in contenders:
                served[c.name] += asyncio.run(load(c, clients, seconds))
        print(f"\n{rounds} rounds of {seconds:.0f} s per streamer at {clients} connections (half streamed)")
        print(f"{'':34}{'count':>8} {'> 1 ms':>8} {'> 2 ms':>8} {'> 5 ms':>8}   largest")
        for c in contenders:
            print(f"{c.name} ({served[c.name]} requests)")
            for series, row in summary(c.port).items():
                print(f"  {series:32}{row}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for c in contenders:
            asyncio.run(clean_up(c.env))


if __name__ == "__main__":
    main()
