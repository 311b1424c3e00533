"""One repeat of ``bench/suite.py``: every scenario against every contender, figures recorded per repeat.

Interleaved where it can be (concurrency 1: one request to each contender per round, shuffled); the load
phases (concurrency 16, open-loop rates, the rate search) run one contender at a time, in an order shuffled
each repeat, so a slow hour of the machine does not fall on one contender only. Memory (idle and with
streams held open) is read once per run, before any load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import _suite_load as load
import aiohttp
import asyncpg
from _suite_servers import Server

Send = Callable[[aiohttp.ClientSession], Awaitable[None]]


@dataclass
class Contender:
    """One thing measured: its target, the process tree its CPU and memory are read from, its kind."""

    name: str
    kind: str  # "direct", "aiaas" or "litellm"
    target: load.Target
    server: Server | None
    processes: int = 1


@dataclass
class Settings:
    requests: int  # concurrency-1 requests per contender and mode
    seconds: float  # each concurrency-16 phase and each open-loop rate
    concurrency: int
    rates: list[float]
    search_steps: int
    probe_seconds: float
    p99_ms: float
    streams: int
    mgmt_rates: list[float]
    mgmt_seconds: float
    warmup: int
    pause: float = 1.0  # settling time around the memory readings and between load phases
    slow_seconds: float = 30.0  # the longest a mock slow stream lasts


@dataclass
class Figures:
    """figure -> contender -> one value per repeat; notes say what went wrong or what a figure means."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    probes: dict[str, str] = field(default_factory=dict)  # the rate search's probes, last repeat

    def add(self, figure: str, contender: str, value: float) -> None:
        self.values.setdefault(figure, {}).setdefault(contender, []).append(value)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class Ledger:
    """The aiaas worker's progress: rows in the usage ledger, read straight from its database."""

    def __init__(self, database_url: str, worker: Server) -> None:
        self.url = database_url.replace("postgresql+asyncpg", "postgresql")
        self.worker = worker
        self._conn: asyncpg.Connection | None = None

    async def rows(self) -> int:
        if self._conn is None:  # one connection for the run: a new one per poll would load the machine
            self._conn = await asyncpg.connect(self.url)
        return int(await self._conn.fetchval("SELECT count(*) FROM usage.requests"))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def settle(self, *, quiet: float = 1.0, limit: float = 60.0) -> int:
        """The row count once it has not grown for ``quiet`` seconds (at most ``limit`` seconds)."""
        deadline = time.monotonic() + limit
        last, since = await self.rows(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            await asyncio.sleep(0.1)
            now = await self.rows()
            if now != last:
                last, since = now, time.monotonic()
        return last

    async def until(self, count: int, *, limit: float = 60.0) -> tuple[int, float]:
        """Poll until ``count`` rows are stored (or nothing arrives for 5 s, or ``limit``); the rows and the
        time the last new row was seen."""
        deadline = time.monotonic() + limit
        last, seen = await self.rows(), time.monotonic()
        while last < count and time.monotonic() < deadline and time.monotonic() - seen < 5:
            await asyncio.sleep(0.05)
            now = await self.rows()
            if now != last:
                last, seen = now, time.monotonic()
        return last, seen


def progress(text: str) -> None:
    """A line on stderr, so a long run shows where it is (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _session(limit: int = 256) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=30),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def repeat(index: int, contenders: list[Contender], s: Settings, figs: Figures, *,
                 ledger: Ledger | None, mgmt: dict[str, tuple[Send, Server]]) -> None:
    """Every scenario once; figures added to ``figs`` under each contender's name."""
    rng = random.Random(index)
    targets = {c.name: c.target for c in contenders}
    upstream = next(c.target.url for c in contenders if c.kind == "direct").split("/v1/")[0]
    sessions = {c.name: _session() for c in contenders}
    try:
        progress(f"repeat {index + 1}: warm-up")
        await _warm(contenders, sessions, s.warmup)
        if index == 0:
            # Once, on servers that have not carried load yet: a heap grown by the load phases would take
            # the streams in without growing, and hide what they cost.
            progress("held-open streams (once, before any load)")
            for c in contenders:
                await _held_streams(c, s, figs, upstream)
        progress(f"repeat {index + 1}: concurrency 1")
        await _concurrency_one(contenders, sessions, targets, s, figs, index)
        order = list(contenders)
        rng.shuffle(order)
        progress(f"repeat {index + 1}: concurrency {s.concurrency}")
        for c in order:
            await _concurrency_n(c, sessions[c.name], s, figs, ledger)
        for tag in ("p50", "p99"):  # added to direct's figure of the same repeat
            raw = figs.values[f"_c{s.concurrency}_{tag}"]
            for c in contenders:
                base = 0.0 if c.kind == "direct" else raw["direct"][-1]
                figs.add(f"cN_{tag}", c.name, raw[c.name][-1] - base)
        direct_at: dict[float, float] = {}
        progress(f"repeat {index + 1}: open loops")
        for rate in s.rates:
            rng.shuffle(order)
            results = {}
            for c in order:
                results[c.name] = await load.open_loop(lambda c=c: load.chat(sessions[c.name], c.target),
                                                       rate=rate, seconds=s.seconds)
                await asyncio.sleep(0.2)
            direct_at[rate] = load.pct(results["direct"].latencies, 0.99)
            for c in contenders:
                r = results[c.name]
                p99 = load.pct(r.latencies, 0.99)
                figs.add(f"open{rate:g}", c.name, p99 if c.kind == "direct" else p99 - direct_at[rate])
                if r.errors:
                    figs.note(f"{c.name}, open loop at {rate:g}/s: {r.errors} failed ({r.error})")
        rng.shuffle(order)
        progress(f"repeat {index + 1}: highest rate with p99 < {s.p99_ms:g} ms")
        for c in order:
            await _search(c, sessions[c.name], s, figs)
        rng.shuffle(order)
        progress(f"repeat {index + 1}: management API")
        for c in contenders:
            if c.name in mgmt:
                await _management(c, *mgmt[c.name], s, figs)
    finally:
        for session in sessions.values():
            await session.close()


async def _warm(contenders: list[Contender], sessions: dict[str, aiohttp.ClientSession], n: int) -> None:
    """Connections opened and every cache of every process warm (several concurrent requests, so each
    worker process of a multi-process server gets some)."""
    for c in contenders:
        for _ in range(max(1, n // 4)):
            await asyncio.gather(*(load.chat(sessions[c.name], c.target) for _ in range(4)),
                                 *(load.stream(sessions[c.name], c.target) for _ in range(2)),
                                 return_exceptions=True)


async def _concurrency_one(contenders: list[Contender], sessions: dict[str, aiohttp.ClientSession],
                           targets: dict[str, load.Target], s: Settings, figs: Figures, index: int) -> None:
    for streamed in (False, True):
        got = await load.interleaved(sessions, targets, s.requests, streamed=streamed, seed=index * 2 + streamed)
        d = got["direct"]
        for c in contenders:
            r = got[c.name]
            if r.errors:
                figs.note(f"{c.name}, concurrency 1 {'streamed' if streamed else 'non-streamed'}: "
                          f"{r.errors} failed ({r.error})")
            for p, tag in ((0.5, "p50"), (0.99, "p99")):
                v = load.pct(r.latencies, p)
                base = 0.0 if c.kind == "direct" else load.pct(d.latencies, p)
                figs.add(f"{'ttfb' if streamed else 'c1'}_{tag}", c.name, v - base)
                if streamed:
                    g = load.pct(r.gaps, p)
                    figs.add(f"gap_{tag}", c.name, g - (0.0 if c.kind == "direct" else load.pct(d.gaps, p)))


async def _concurrency_n(c: Contender, session: aiohttp.ClientSession, s: Settings, figs: Figures,
                         ledger: Ledger | None) -> None:
    """Closed loops at ``s.concurrency``: latency, RPS, CPU per request of the server's tree; for aiaas also
    the worker's ingest of the events those requests produced."""
    base = t0 = cpu_w0 = 0.0
    if c.kind == "aiaas" and ledger is not None:
        base = await ledger.settle(quiet=s.pause)
        t0, cpu_w0 = time.monotonic(), ledger.worker.cpu_seconds()
    sent = 0
    for streamed in (False, True):
        cpu0 = c.server.cpu_seconds() if c.server else 0.0
        r = await load.closed(session, c.target, clients=s.concurrency, seconds=s.seconds, streamed=streamed)
        cpu = (c.server.cpu_seconds() - cpu0) if c.server else math.nan
        sent += len(r.latencies)
        n = max(1, len(r.latencies))
        tag = "stream" if streamed else "req"
        figs.add(f"rps_{tag}", c.name, r.rps)
        figs.add(f"cpu_{tag}", c.name, cpu * 1000 / n)
        if not streamed:
            for p, ptag in ((0.5, "p50"), (0.99, "p99")):
                figs.values.setdefault(f"_c{s.concurrency}_{ptag}", {}).setdefault(c.name, []).append(
                    load.pct(r.latencies, p))
        if r.errors:
            figs.note(f"{c.name}, concurrency {s.concurrency} {'streamed' if streamed else 'non-streamed'}: "
                      f"{r.errors} failed ({r.error})")
    if c.kind == "aiaas" and ledger is not None:
        rows, seen = await ledger.until(int(base) + sent)
        stored = rows - int(base)
        figs.add("ingest", c.name, stored / max(seen - t0, 1e-6))
        figs.add("ingest_cpu", c.name, (ledger.worker.cpu_seconds() - cpu_w0) * 1000 / max(1, stored))
        if stored < sent:
            figs.note(f"{c.name}: the worker stored {stored} of {sent} events within the wait"
                      + (f" (its log ends: {ledger.worker.tail()})" if stored == 0 else ""))


async def _search(c: Contender, session: aiohttp.ClientSession, s: Settings, figs: Figures) -> None:
    start = 0.8 * (figs.values.get("rps_req", {}).get(c.name) or [50.0])[-1]

    async def probe(rate: float) -> load.Samples:
        return await load.open_loop(lambda: load.chat(session, c.target), rate=rate, seconds=s.probe_seconds)

    best, probes = await load.max_rate(probe, start=start, steps=s.search_steps, p99_ms=s.p99_ms, pause=s.pause / 2)
    figs.add("max_rps", c.name, best)
    figs.probes[c.name] = ", ".join(f"{r:.0f}/s: {p99:.0f} ms" + (f" ({e} failed)" if e else "")
                                    for r, p99, e in probes)


async def _held_streams(c: Contender, s: Settings, figs: Figures, upstream: str) -> None:
    if c.server is None:
        return
    await asyncio.sleep(s.pause / 2)
    idle = c.server.rss_mb()
    figs.add("rss_idle", c.name, idle)
    held_rss: list[float] = []

    async def measure() -> None:
        held_rss.append(c.server.rss_mb() if c.server else 0.0)

    held = await load.hold_streams(c.target, s.streams, measure=measure, settle=s.pause)
    if held < s.streams:
        figs.note(f"{c.name}: only {held} of {s.streams} slow streams were open at the memory reading")
    figs.add("rss_1k", c.name, (held_rss[0] - idle) / max(1, held) * 1000)
    left = time.monotonic()
    still = await _open_upstream_streams(upstream, until=left + s.slow_seconds + 5)
    after = time.monotonic() - left
    if still or after > 2:
        figs.note(f"{c.name}: {still} upstream streams still open {after:.0f} s after its clients left"
                  if still else f"{c.name}: its upstream streams closed {after:.0f} s after its clients left")


async def _open_upstream_streams(upstream: str, *, until: float) -> int:
    """Wait until the mock writes no slow stream any more (or ``until``); how many it still writes."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            async with session.get(f"{upstream}/bench/open-streams") as r:
                n = int((await r.json())["open_slow_streams"])
            if n == 0 or time.monotonic() > until:
                return n
            await asyncio.sleep(0.2)


async def _management(c: Contender, send: Send, server: Server, s: Settings, figs: Figures) -> None:
    """Each of ``s.mgmt_rates`` in an open loop; the failures and the CPU per request of the highest."""
    async with _session() as session:
        for _ in range(20):  # warm: connections, caches (a failure here shows in the measured load)
            with contextlib.suppress(load.BadStatus, aiohttp.ClientError, TimeoutError):
                await send(session)
        for rate in sorted(s.mgmt_rates):
            await asyncio.sleep(s.pause)
            cpu0 = server.cpu_seconds()
            r = await load.open_loop(lambda: send(session), rate=rate, seconds=s.mgmt_seconds)
            cpu = server.cpu_seconds() - cpu0
            sent = len(r.latencies) + r.errors
            figs.add(f"mgmt{rate:g}", c.name, load.pct(r.latencies, 0.99))
            if r.errors:
                figs.note(f"{c.name}, management API at {rate:g}/s: {r.errors} of {sent} failed ({r.error})")
    figs.add("mgmt_failed", c.name, 100 * r.errors / max(1, sent))
    figs.add("mgmt_cpu", c.name, cpu * 1000 / max(1, sent))
