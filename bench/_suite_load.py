"""Load shapes of ``bench/suite.py``: closed loops, clock-driven open loops, a search for the highest rate
under a p99 bound, and streams held open. Every request goes to 127.0.0.1; every loop is bounded in count
and time.

Latencies are seconds. In an open loop each request has a send time fixed by the clock before the run
starts, and its latency counts from that time, not from when it was actually sent: a server (or this
client) that falls behind cannot hide the wait behind fewer requests (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import msgspec


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_chunk = msgspec.json.Decoder(_Chunk).decode


def _has_content(line: bytes) -> bool:
    try:
        chunk = _chunk(line[6:])
    except msgspec.DecodeError:
        return False
    return bool(chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content)


@dataclass(frozen=True)
class Target:
    """Where one contender's chat completions go, with its key and the model names it serves."""

    url: str
    key: str
    model: str
    slow_model: str

    def body(self, *, stream: bool, slow: bool = False) -> bytes:
        model = self.slow_model if slow else self.model
        return (b'{"model":"%s","max_tokens":16,"messages":[{"role":"user","content":"hi"}]%s}'
                % (model.encode(), b',"stream":true' if stream else b""))

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": "application/json", "authorization": f"Bearer {self.key}"}


class BadStatus(RuntimeError):
    """A contender answered something other than 200."""


async def chat(session: aiohttp.ClientSession, t: Target) -> float:
    """One non-streamed chat completion; its latency."""
    started = time.perf_counter()
    async with session.post(t.url, data=t.body(stream=False), headers=t.headers) as r:
        await r.read()
        if r.status != 200:
            raise BadStatus(f"{r.status} {(await r.text())[:200]}")
    return time.perf_counter() - started


async def stream(session: aiohttp.ClientSession, t: Target) -> tuple[float, list[float]]:
    """One streamed chat completion read to its end: the time to the first content chunk, and the gaps
    between consecutive content chunks."""
    started = time.perf_counter()
    stamps: list[float] = []
    async with session.post(t.url, data=t.body(stream=True), headers=t.headers) as r:
        if r.status != 200:
            raise BadStatus(f"{r.status} {(await r.text())[:200]}")
        async for line in r.content:
            if line.startswith(b"data: {") and _has_content(line):
                stamps.append(time.perf_counter())
    if not stamps:
        raise BadStatus("a stream without content")
    return stamps[0] - started, [b - a for a, b in itertools.pairwise(stamps)]


def pct(xs: list[float], p: float) -> float:
    """The ``p`` quantile (0..1) of ``xs``, in milliseconds (nan for no sample)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


@dataclass
class Samples:
    """What one phase measured for one contender."""

    latencies: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    errors: int = 0
    error: str = ""
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        self.error = self.error or f"{type(exc).__name__}: {exc}"[:160]


async def interleaved(sessions: dict[str, aiohttp.ClientSession], targets: dict[str, Target], n: int, *,
                      streamed: bool, seed: int) -> dict[str, Samples]:
    """Concurrency 1: ``n`` rounds of one request to every contender, in an order shuffled each round (so
    a server's after-response work lands on every contender alike)."""
    out = {name: Samples() for name in targets}
    order = list(targets)
    rng = random.Random(seed)
    for _ in range(n):
        rng.shuffle(order)
        for name in order:
            s = out[name]
            try:
                if streamed:
                    ttfb, gaps = await stream(sessions[name], targets[name])
                    s.latencies.append(ttfb)
                    s.gaps.extend(gaps)
                else:
                    s.latencies.append(await chat(sessions[name], targets[name]))
            except (BadStatus, aiohttp.ClientError, TimeoutError) as exc:
                s.fail(exc)
    return out


async def closed(session: aiohttp.ClientSession, t: Target, *, clients: int, seconds: float,
                 streamed: bool) -> Samples:
    """``clients`` connections each sending its next request when the last one ends, for ``seconds``."""
    out = Samples()
    stop = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < stop:
            try:
                if streamed:
                    ttfb, gaps = await stream(session, t)
                    out.latencies.append(ttfb)
                    out.gaps.extend(gaps)
                else:
                    out.latencies.append(await chat(session, t))
            except (BadStatus, aiohttp.ClientError, TimeoutError) as exc:
                out.fail(exc)
                await asyncio.sleep(0.01)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    out.seconds = time.perf_counter() - started
    return out


async def open_loop(send: Callable[[], Awaitable[object]], *, rate: float, seconds: float,
                    grace: float = 10.0) -> Samples:
    """``send()`` at ``rate`` per second for ``seconds``, each call started at its scheduled time (or as soon
    as the client can, when it is late), latency counted from the scheduled time. Calls still unanswered
    ``grace`` seconds after the last start count as errors."""
    out = Samples()
    loop = asyncio.get_running_loop()
    n = max(1, int(rate * seconds))
    # The loop's clock only schedules (uvloop's moves in whole milliseconds); latencies use perf_counter.
    t0, pc0 = loop.time() + 0.05, time.perf_counter() + 0.05
    tasks: list[asyncio.Task[None]] = []

    async def fire(scheduled: float) -> None:
        try:
            await send()
            out.latencies.append(time.perf_counter() - scheduled)
        except (BadStatus, aiohttp.ClientError, TimeoutError) as exc:
            out.fail(exc)

    def start(scheduled: float) -> None:
        tasks.append(loop.create_task(fire(scheduled)))

    for i in range(n):
        loop.call_at(t0 + i / rate, start, pc0 + i / rate)
    await asyncio.sleep(max(0.0, t0 + n / rate - loop.time()) + 0.01)
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        out.errors += len(pending)
        if pending and not out.error:
            out.error = f"{len(pending)} requests unanswered {grace:.0f} s after the last send"
        await asyncio.gather(*pending, return_exceptions=True)
    out.seconds = n / rate
    return out


async def max_rate(probe: Callable[[float], Awaitable[Samples]], *, start: float, steps: int,
                   p99_ms: float, pause: float = 0.5) -> tuple[float, list[tuple[float, float, int]]]:
    """The highest open-loop rate found in ``steps`` probes whose p99 stays under ``p99_ms`` with no error:
    up by a quarter after a pass (or halfway to the lowest failing rate), halfway down after a failure.
    Returns that rate (0 when none passed) and each probe's (rate, p99 ms, errors)."""
    lo, hi, rate = 0.0, float("inf"), max(1.0, start)
    probes: list[tuple[float, float, int]] = []
    for _ in range(steps):
        s = await probe(rate)
        p99 = pct(s.latencies, 0.99)
        probes.append((rate, p99, s.errors))
        if s.errors == 0 and p99 < p99_ms:
            lo = rate
            rate = min(rate * 1.25, (rate + hi) / 2)
        else:
            hi = rate
            rate = (lo + hi) / 2 if lo else rate / 2
        await asyncio.sleep(pause)  # let the last probe's stragglers and after-response work drain
    return lo, probes


async def hold_streams(t: Target, n: int, *, measure: Callable[[], Awaitable[None]], settle: float = 1.0,
                       timeout: float = 30.0) -> int:
    """Open ``n`` slow streams at once, wait until each has sent its first content chunk, call
    ``measure`` while they are all open, then close them. Returns how many were open at ``measure``."""
    opened = 0
    all_open = asyncio.Event()
    release = asyncio.Event()

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal opened
        async with session.post(t.url, data=t.body(stream=True, slow=True), headers=t.headers) as r:
            if r.status != 200:
                raise BadStatus(f"{r.status} {(await r.text())[:200]}")
            counted = False
            async for line in r.content:
                if not counted and line.startswith(b"data: {") and _has_content(line):
                    counted = True
                    opened += 1
                    if opened >= n:
                        all_open.set()
                if counted and release.is_set():
                    return

    conn = aiohttp.TCPConnector(limit=n + 8)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout + 30)) as session:
        tasks = [asyncio.create_task(one(session)) for _ in range(n)]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_open.wait(), timeout)
        held = opened
        await asyncio.sleep(settle)  # let every stream settle (buffers allocated, first writes done)
        await measure()
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return held
