"""The load of ``bench/soak.py``: requests against the streamer, counted into the current interval's bucket.

``Load.open_loop`` is the soak (each request due at a time set by the clock, its latency counted from
then); ``Load.closed_loop`` warms up and probes capacity; ``held_streams`` opens trickling streams and
keeps them open, to weigh one open stream. aiohttp as the client: about 0.35 ms of CPU per request on
the development machine, a tenth of a core at 300 requests/s.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from _soak_probes import Tree

MAX_IN_FLIGHT = 10_000
TIMEOUT = aiohttp.ClientTimeout(total=60)
PLAIN = b'{"model":"bench/fake","messages":[{"role":"user","content":"hi"}]}'
STREAMED = b'{"model":"bench/fake","stream":true,"messages":[{"role":"user","content":"hi"}]}'
TRICKLE = b'{"model":"bench/fake","stream":true,"messages":[{"role":"user","content":"trickle"}]}'


@dataclass
class Bucket:
    """What the requests that ended in one interval did."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    """Requests against the streamer, counted into the current bucket."""

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str) -> None:
        self.session, self.url = session, url + "/v1/chat/completions"
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        self.bucket = Bucket()
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.sent = 0
        self.refused = 0  # never sent: more than MAX_IN_FLIGHT were waiting already

    async def one(self, streamed: bool, due: float) -> None:
        """One request, due at ``due``; its latency runs from then to the last byte. ``time.perf_counter``, not
        the loop's clock: uvloop's counts whole milliseconds."""
        self.in_flight += 1
        self.sent += 1
        self.bucket.sent += 1
        error = None
        try:
            async with self.session.post(self.url, data=STREAMED if streamed else PLAIN, headers=self.headers,
                                         timeout=TIMEOUT) as r:
                body = await r.read()
                if r.status != 200:
                    error = f"HTTP {r.status}"
                elif streamed and not body.rstrip().endswith(b"data: [DONE]"):
                    error = "stream without [DONE]"
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        finally:
            self.in_flight -= 1
        if error:
            self.bucket.errors[error] += 1
            self.errors[error] += 1
        else:
            self.bucket.latencies.append((time.perf_counter() - due) * 1000)

    async def closed_loop(self, clients: int, seconds: float) -> tuple[float, int]:
        """Requests/s (half streamed) at ``clients`` connections each sending the next at once; and errors."""
        clock = time.perf_counter
        started = clock()
        stop = started + seconds
        before, errors = self.sent, sum(self.errors.values())

        async def client(i: int) -> None:
            while clock() < stop:
                i += 1
                await self.one(i % 2 == 1, clock())

        await asyncio.gather(*(client(i) for i in range(clients)))
        return (self.sent - before) / (clock() - started), sum(self.errors.values()) - errors

    async def open_loop(self, rate: float, seconds: float, stream_share: float) -> None:
        """Request ``i`` is due at ``start + i / rate``; sent then, whatever the others are doing."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        start, i, owed = time.perf_counter(), 0, 0.0
        while (due := start + i / rate) < start + seconds:
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            owed += stream_share
            streamed = owed >= 1.0
            owed -= 1.0 if streamed else 0.0
            i += 1
            if self.in_flight >= MAX_IN_FLIGHT:  # counted as sent and failed: the gateway fell that far behind
                self.sent += 1
                self.refused += 1
                self.bucket.sent += 1
                self.bucket.errors["over 10,000 in flight"] += 1
                self.errors["over 10,000 in flight"] += 1
                continue
            task = loop.create_task(self.one(streamed, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=TIMEOUT.total)


async def held_streams(url: str, key: str, n: int, streamer: Tree, *, settle: float) -> tuple[float, int, float, int]:
    """Open ``n`` trickling streams (100 a second) and hold them; RSS and fds of the streamer while all are open,
    and after they closed."""
    opened = 0
    all_open = asyncio.Event()

    async def hold(session: aiohttp.ClientSession) -> None:
        nonlocal opened
        async with session.post(url + "/v1/chat/completions", data=TRICKLE, headers={
                "content-type": "application/json", "authorization": f"Bearer {key}"}) as r:
            if r.status != 200:
                raise RuntimeError(f"held stream: HTTP {r.status} {await r.text()}")
            first = True
            async for line in r.content:
                if first and line.startswith(b"data: {"):
                    first = False
                    opened += 1
                    if opened == n:
                        all_open.set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n + 8),
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        tasks = []
        try:
            for _ in range(n):  # 100 a second, as streams start in life, not all in the same millisecond
                tasks.append(asyncio.create_task(hold(session)))
                await asyncio.sleep(0.01)
            waiter = asyncio.create_task(all_open.wait())
            done, _ = await asyncio.wait([waiter, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                failed = [t for t in done if t.exception()]
                raise RuntimeError(f"only {opened} of {n} streams opened"
                                   + (f": {failed[0].exception()}" if failed else ""))
            await asyncio.sleep(settle)
            held_rss, held_fds = streamer.rss(), streamer.fds()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(settle)  # the streamer notices the clients left and closes the upstream streams
    return held_rss, held_fds, streamer.rss(), streamer.fds()
