"""What ``bench/soak.py`` reads from the outside of the processes it watches.

- ``Tree``: RSS, open descriptors and CPU of a process and its descendants (psutil).
- ``Backlog``: the events not yet consumed, wherever they wait: ready messages of the usage and analytics
  queues (``Broker.queue_depth``, a passive declare), the streamer's in-process publish buffer and its
  Redis spill stream (``<prefix>inference:events:spill``, written while RabbitMQ does not confirm), and
  the streamer's requests in flight; the last two from its ``/metrics`` (with the run's metrics token).
- ``log_summary``: the commonest warnings and errors of a role's JSON log.
- ``redis_footprint``: the run's Redis keys by shape, with a sample's size and time to live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

MIB = 1024 * 1024


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 with fewer than 3)."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


class Tree:
    """A process and its descendants (or the process alone): RSS, open descriptors and CPU time summed."""

    def __init__(self, pid: int, *, children: bool = True) -> None:
        self.root = psutil.Process(pid)
        self.children = children
        self._cpu = self.cpu()
        self._at = time.monotonic()

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)] if self.children else [self.root]
        except psutil.NoSuchProcess:
            return []

    def _sum(self, read: Callable[[psutil.Process], float]) -> float:
        total = 0.0
        for p in self._procs():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += read(p)
        return total

    def rss(self) -> float:
        """MiB."""
        return self._sum(lambda p: p.memory_info().rss) / MIB

    def fds(self) -> int:
        return int(self._sum(lambda p: p.num_fds()))

    def cpu(self) -> float:
        return self._sum(lambda p: sum(p.cpu_times()[:2]))

    def cpu_percent(self) -> float:
        """CPU% (100 = one core) since the last call."""
        now, cpu = time.monotonic(), self.cpu()
        share = max(0.0, cpu - self._cpu) / max(now - self._at, 1e-9) * 100
        self._cpu, self._at = cpu, now
        return share


@dataclass(frozen=True)
class BacklogReading:
    queued: dict[str, int | None]  # ready messages per consumer queue
    buffered: int | None  # events in the streamer's publish buffer
    spilled: int | None  # entries in the streamer's Redis spill stream
    in_flight: int | None  # requests the streamer is handling
    events: dict[str, float]  # the streamer's aiaas_events_total by outcome

    @property
    def unpublished(self) -> int:
        return (self.buffered or 0) + (self.spilled or 0)

    @property
    def empty(self) -> bool:
        return all(v == 0 for v in self.queued.values()) and self.buffered == 0 and self.spilled == 0


_SAMPLE = re.compile(r'^(\w+)(?:\{([^}]*)\})? (\S+)$')


class Backlog:
    """Reads the backlog of events; each queue probe is waited for with a bound but never cancelled (as the
    worker's own lag watch does: cancelling aio-pika mid-call can take its connection down)."""

    def __init__(self, settings: object, metrics_url: str, token: str) -> None:
        from redis.asyncio import Redis

        from aiaas.kernel.broker import Broker, Subscription

        async def nothing(_delivery: object) -> None:
            return None

        self.broker = Broker(settings)  # type: ignore[arg-type]
        self.subs = {c: Subscription(consumer=c, source="inference", routing_keys=(), handler=nothing)
                     for c in ("usage", "analytics")}
        self.redis = Redis.from_url(settings.redis_url)  # type: ignore[attr-defined]
        self.spill_key = f"{settings.redis_prefix}inference:events:spill"  # type: ignore[attr-defined]
        self.metrics_url, self.headers = metrics_url, {"authorization": f"Bearer {token}"}
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._probes: dict[str, asyncio.Future[int]] = {}

    async def _metrics(self) -> dict[str, float]:
        try:
            async with self.http.get(self.metrics_url, headers=self.headers) as r:
                text = await r.text() if r.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m and m[1] in ("aiaas_events_buffered", "aiaas_http_requests_in_flight", "aiaas_events_total"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
                key = m[1] + (":" + labels["outcome"] if "outcome" in labels else "")
                out[key] = out.get(key, 0.0) + float(m[3])
        return out

    async def read(self, timeout: float = 3.0) -> BacklogReading:
        for c, sub in self.subs.items():
            if c not in self._probes or self._probes[c].done():
                self._probes[c] = asyncio.ensure_future(self.broker.queue_depth(sub))
        metrics, spilled = await asyncio.gather(self._metrics(), self._spilled())
        await asyncio.wait(self._probes.values(), timeout=timeout)
        queued = {c: p.result() if p.done() and p.exception() is None else None for c, p in self._probes.items()}
        buffered = metrics.get("aiaas_events_buffered")
        in_flight = metrics.get("aiaas_http_requests_in_flight")  # the scrape itself is one of them
        return BacklogReading(queued=queued, buffered=None if buffered is None else int(buffered), spilled=spilled,
                              in_flight=None if in_flight is None else max(0, int(in_flight) - 1),
                              events={k.split(":", 1)[1]: v for k, v in metrics.items() if ":" in k})

    async def _spilled(self) -> int | None:
        try:
            return int(await self.redis.xlen(self.spill_key))
        except Exception:  # Redis busy or down: unknown this time
            return None

    async def close(self) -> None:
        if self._probes:
            await asyncio.wait(self._probes.values(), timeout=5)
        await self.broker.close()
        await self.redis.aclose()
        await self.http.close()


def log_summary(path: Path, top: int = 5) -> list[str]:
    """The ``top`` commonest (level, logger, message) of a JSON log, with their counts."""
    if not path.exists():
        return []
    seen: Counter[str] = Counter()
    with path.open(errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"level": "?", "logger": "stderr", "msg": line.strip()}
            if not isinstance(rec, dict):
                continue
            msg = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+(\.\d+)?", "#", str(rec.get("msg", "")))[:110]
            seen[f"{rec.get('level', '?')} {rec.get('logger', '?')}: {msg}"] += 1
    return [f"{n:7d} x {what}" for what, n in seen.most_common(top)]


async def redis_footprint(settings: object, top: int = 4) -> list[str]:
    """The run's Redis keys grouped by shape (ids replaced by ``*``): count, a sample's bytes and TTL."""
    from redis.asyncio import Redis

    prefix = settings.redis_prefix  # type: ignore[attr-defined]
    redis = Redis.from_url(settings.redis_url)  # type: ignore[attr-defined]
    shapes: Counter[str] = Counter()
    sample: dict[str, bytes] = {}
    try:
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            shape = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{16,}|\d{6,}", "*",
                           key.decode(errors="replace")[len(prefix):])
            shapes[shape] += 1
            sample.setdefault(shape, key)
        out = []
        for shape, n in shapes.most_common(top):
            size = await redis.memory_usage(sample[shape]) or 0
            ttl = await redis.ttl(sample[shape])
            life = "no expiry" if ttl < 0 else f"expires in {ttl / 86400:.1f} days" if ttl > 86400 else \
                f"expires in {ttl} s"
            out.append(f"{n:9,d} x {shape} ({size} B each, {life})")
        return out
    finally:
        await redis.aclose()
