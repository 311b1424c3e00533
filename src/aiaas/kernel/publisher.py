"""Fire-and-forget publishing of integration events that never loses one.

``EventPublisher.emit`` is synchronous and never blocks or raises: it appends the event to a bounded
in-process buffer and wakes one background task, which publishes what the buffer holds to RabbitMQ with
publisher confirms, each publish started one loop iteration after the last. Under load, batches form by
themselves: events arrive while a round of confirms is outstanding. Waiting for a batch to gather
(``linger``, ``AIAAS_EVENT_LINGER_MS``) is off by default: at low concurrency it only moves the broker
work of many requests into bursts that land inside later requests (added p50 0.60 -> 0.48 ms and p99
1.5 -> 1.0 ms in ``bench/gateway_overhead.py`` without it; the same throughput at 32 connections).

When RabbitMQ is unreachable (or a publish is not confirmed in time) or the buffer is full, events are
**spilled** to a Redis stream, one per publishing context (``<context>:events:spill``), and a replayer
publishes them from the head of that stream, in order, once the broker is back; an entry is deleted
only after its confirm. While a context's stream holds entries, new events of that context are appended
behind them rather than published directly, so order is kept across the outage.

**Envelopes.** What one round drains is packed into envelopes (``kernel.broker``): consecutive events of
one context and routing key, up to ``envelope_size`` of them, travel as one AMQP message with one
confirm. Under load that turns hundreds of publishes and confirms per second into a few, on the streamer
and on the broker, and the worker acks one message for many events. An event alone (low load) still
travels as a plain message. Each event keeps its own id, so the consumers' idempotency is per event.

Why a Redis stream and not an outbox table: RedisClient is already on the request path (limits), ``XADD`` costs
tens of microseconds and keeps order, and it costs nothing while RabbitMQ is healthy; an outbox table
would add a database write to every request. If Redis is down as well, events stay in the in-memory
buffer (bounded) and are retried; only when both are down and the buffer overflows is an event dropped,
and only then does ``dropped`` move.

Metrics (``aiaas_events_total{context, outcome}``): ``published`` (sent to RabbitMQ), ``confirmed``,
``spilled``, ``replayed`` (confirmed from the spill stream), ``dropped`` (must stay 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable

import msgspec
from prometheus_client import Counter, Gauge

from aiaas.kernel.broker import ENVELOPE_HEADER, Broker, pack_envelope
from aiaas.kernel.events import Event
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable

log = logging.getLogger("aiaas.publisher")

EVENTS = Counter("aiaas_events_total", "Integration events by context and outcome.", ["context", "outcome"])
BUFFERED = Gauge("aiaas_events_buffered", "Events in the in-process publish buffer.", multiprocess_mode="livesum")

_encoder = msgspec.json.Encoder()

# Field names of a spill-stream entry.
_F_ROUTING = b"rk"
_F_ID = b"id"
_F_BODY = b"body"
_F_TRACE = b"tp"


class _Pending(msgspec.Struct, frozen=True):
    """One encoded event waiting to be published."""

    context: str
    routing_key: str
    event_id: str
    body: bytes
    traceparent: str | None


class EventPublisher:
    """A bounded buffer of events drained to the broker, with a Redis-stream spill for outages."""

    def __init__(
        self,
        broker: Broker,
        *,
        redis: RedisClient | None = None,
        keys: Keys | None = None,
        buffer_size: int = 10_000,
        batch_size: int = 200,
        envelope_size: int = 100,
        publish_timeout: float = 2.0,
        replay_interval: float = 1.0,
        linger: float = 0.0,
    ) -> None:
        self._broker = broker
        self._redis = redis
        self._keys = keys or Keys("")
        self._buffer: deque[_Pending] = deque()
        self._buffer_size = buffer_size
        self._batch_size = batch_size
        self._envelope_size = max(1, envelope_size)
        self._publish_timeout = publish_timeout
        self._replay_interval = replay_interval
        self._linger = linger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        # Contexts whose spill stream may hold entries: new events go behind them to keep order.
        self._spilling: set[str] = set()
        self._contexts: set[str] = set()
        self._closing = False
        self._last_connect_attempt = 0.0
        self.dropped = 0

    # ------------------------------------------------------------------ request path
    def emit(self, context: str, event: Event) -> None:
        """Queue ``event`` for ``context``'s exchange; never blocks, never raises."""
        try:
            item = _Pending(context, type(event).routing_key, event.event_id, _encoder.encode(event),
                            event.traceparent)
        except Exception:  # an unencodable event is a programming error; it must not fail the request
            log.exception("cannot encode %s", type(event).__name__)
            self._drop(context, 1)
            return
        self._contexts.add(context)
        # Above the bound the buffer still accepts a burst (twice the size) because the drain task spills
        # the excess to Redis at once; beyond that, memory protection wins and the event is dropped.
        if len(self._buffer) >= 2 * self._buffer_size:
            log.error("event buffer overflowing; dropped %s %s", type(event).__name__, event.event_id)
            self._drop(context, 1)
            return
        self._buffer.append(item)
        BUFFERED.inc()
        self._wake.set()
        self._ensure_running()

    def _drop(self, context: str, n: int) -> None:
        self.dropped += n
        EVENTS.labels(context, "dropped").inc(n)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain_loop(), name="aiaas-publisher")
        if self._redis is not None and (self._replayer is None or self._replayer.done()):
            self._replayer = asyncio.get_running_loop().create_task(self._replay_loop(), name="aiaas-replayer")

    async def start(self, contexts: Iterable[str] = ()) -> None:
        """Start the background tasks; replay spills left by earlier processes for ``contexts``."""
        self._contexts.update(contexts)
        self._spilling.update(contexts)  # unknown until looked at: the replayer checks and clears
        self._ensure_running()

    # ------------------------------------------------------------------ drain
    async def _drain_loop(self) -> None:
        delay = 0.05
        while True:
            if not self._buffer:
                self._wake.clear()
                if self._closing:
                    return
                await self._wake.wait()
                if self._linger and not self._closing and len(self._buffer) < self._batch_size:
                    # Let a batch gather: one wake-up and one round of confirms for many requests,
                    # instead of broker work interleaved with every response at low concurrency.
                    await asyncio.sleep(self._linger)
                continue
            batch = [self._buffer[i] for i in range(min(self._batch_size, len(self._buffer)))]
            done = await self._dispatch(batch)
            for _ in range(done):
                self._buffer.popleft()
            BUFFERED.dec(done)
            if done < len(batch):
                # Neither RabbitMQ nor Redis took them: keep them in memory and retry with backoff.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                delay = 0.05

    async def _dispatch(self, batch: list[_Pending]) -> int:
        """Publish or spill a prefix of ``batch``; return how many events left the buffer."""
        overflow = len(self._buffer) > self._buffer_size
        up = await self._broker_up()
        direct: list[_Pending] = []
        if up and not overflow:
            for item in batch:
                if item.context in self._spilling:
                    break
                direct.append(item)
        handled = 0
        if direct:
            handled = await self._publish_many(direct)
            for item in direct[:handled]:
                EVENTS.labels(item.context, "confirmed").inc()
            if handled < len(direct):
                log.warning("RabbitMQ did not confirm; spilling to Redis")
                up = False
        rest = batch[handled:]
        if not rest:
            return handled
        spilled = await self._spill(rest)
        if spilled or not up:
            return handled + spilled
        # Redis cannot take them but RabbitMQ can: publish directly rather than hold them back (order
        # behind an unreachable spill stream cannot be kept anyway; consumers are idempotent).
        ok = await self._publish_many(rest)
        for item in rest[:ok]:
            EVENTS.labels(item.context, "confirmed").inc()
        return handled + ok

    async def _broker_up(self) -> bool:
        """Whether RabbitMQ is connected now; opens the first connection if none was ever made."""
        if self._broker.connected:
            return True
        now = time.monotonic()
        if now - self._last_connect_attempt < 1.0:
            return False
        self._last_connect_attempt = now
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._broker.connect(timeout=self._publish_timeout), self._publish_timeout)
        return self._broker.connected

    def _envelopes(self, items: list[_Pending]) -> list[list[_Pending]]:
        """``items`` cut, in order, into runs of one context and routing key of at most ``envelope_size``."""
        out: list[list[_Pending]] = []
        for item in items:
            last = out[-1] if out else None
            if (last is not None and len(last) < self._envelope_size and last[0].context == item.context
                    and last[0].routing_key == item.routing_key):
                last.append(item)
            else:
                out.append([item])
        return out

    async def _publish_many(self, items: list[_Pending]) -> int:
        """Publish ``items`` as envelopes, concurrently (one channel keeps their order); return how many
        events the confirmed prefix of envelopes holds.

        The publishes are started one loop iteration apart: building and writing a message costs tens of
        microseconds, and a batch started at once would hold the loop for a millisecond or more while a
        request waits. Started apart, requests that arrive meanwhile are served between two of them.
        """

        async def one(group: list[_Pending]) -> None:
            first = group[0]
            EVENTS.labels(first.context, "published").inc(len(group))
            if len(group) == 1:
                body = first.body
                headers = {"traceparent": first.traceparent} if first.traceparent else None
            else:  # each event carries its own traceparent in its body
                body = pack_envelope([item.body for item in group])
                headers = {ENVELOPE_HEADER: len(group)}
            # The outer timeout also bounds waiting for a channel while the connection reconnects.
            async with asyncio.timeout(self._publish_timeout * 1.5):
                await self._broker.publish(first.context, first.routing_key, body, message_id=first.event_id,
                                           headers=headers, timeout=self._publish_timeout)

        groups = self._envelopes(items)
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            for group in groups:
                tasks.append(loop.create_task(one(group)))
                await asyncio.sleep(0)
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
        confirmed = 0
        for group, res in zip(groups, results, strict=True):
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                log.warning("publish of %d events from %s failed: %s", len(group), group[0].event_id,
                            type(res).__name__)
                # Later ones may have been confirmed too; they are spilled again and the consumers'
                # idempotency absorbs the duplicates.
                return confirmed
            confirmed += len(group)
        return confirmed

    def _stream(self, context: str) -> str:
        return self._keys(context, "events", "spill")

    async def _spill(self, items: list[_Pending]) -> int:
        """Append ``items`` to their contexts' spill streams; return how many were stored."""
        if self._redis is None:
            return 0
        try:
            pipe = self._redis.pipeline(transaction=False)
            for item in items:
                fields: dict[bytes, bytes | str] = {_F_ROUTING: item.routing_key, _F_ID: item.event_id,
                                                     _F_BODY: item.body}
                if item.traceparent:
                    fields[_F_TRACE] = item.traceparent
                pipe.xadd(self._stream(item.context), fields)  # type: ignore[arg-type]
            await pipe.execute()
        except RedisUnavailable as exc:
            log.warning("cannot spill to Redis either (%s); keeping %d events in memory", type(exc).__name__,
                        len(items))
            return 0
        for item in items:
            self._spilling.add(item.context)
            EVENTS.labels(item.context, "spilled").inc()
        return len(items)

    # ------------------------------------------------------------------ replay
    async def _replay_loop(self) -> None:
        while True:
            try:
                busy = False
                for context in sorted(self._spilling):
                    busy |= await self._replay(context)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or RabbitMQ hiccup: try again at the next tick
                log.warning("replay failed (%s)", type(exc).__name__)
                busy = False
            if self._closing and not self._spilling:
                return
            if not busy:
                await asyncio.sleep(self._replay_interval)

    async def _replay(self, context: str) -> bool:
        """Publish one batch from the head of ``context``'s stream; False when it is empty or blocked."""
        assert self._redis is not None
        stream = self._stream(context)
        lock = self._keys(context, "events", "spill-lock")
        token = f"{id(self)}-{time.monotonic_ns()}"
        # One replayer at a time per context (across every replica), so the stream is replayed in order.
        if not await self._redis.set(lock, token, nx=True, px=30_000):
            return False
        try:
            entries = await self._redis.xrange(stream, count=self._batch_size)
            if not entries:
                self._spilling.discard(context)
                return False
            items = [
                _Pending(context, f[_F_ROUTING].decode(), f[_F_ID].decode(), f[_F_BODY],
                         f[_F_TRACE].decode() if _F_TRACE in f else None)
                for _, f in entries
            ]
            if not await self._broker_up():
                return False
            ok = await self._publish_many(items)
            if ok:
                await self._redis.xdel(stream, *[eid for eid, _ in entries[:ok]])
                EVENTS.labels(context, "replayed").inc(ok)
            return ok == len(items)
        finally:
            # Release only our own lock (it may have expired and been taken by another replica).
            await self._redis.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                1, lock, token,
            )

    # ------------------------------------------------------------------ lifecycle
    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until the buffer is empty (every event confirmed or spilled), or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self._buffer and time.monotonic() < deadline:
            self._ensure_running()
            await asyncio.sleep(0.01)

    async def drain_spill(self, timeout: float = 30.0) -> bool:
        """Wait until every spill stream this process knows of is replayed; True when they are empty."""
        deadline = time.monotonic() + timeout
        await self.flush(timeout)
        while self._spilling and time.monotonic() < deadline:
            self._ensure_running()
            await asyncio.sleep(0.05)
        return not self._spilling

    async def close(self, timeout: float = 10.0) -> None:
        """Flush (publishing or spilling what is buffered), then stop the background tasks."""
        await self.flush(timeout)
        if self._buffer:
            log.error("%d events still buffered at shutdown; they are lost", len(self._buffer))
            for item in self._buffer:
                self._drop(item.context, 1)
            self._buffer.clear()
        self._closing = True
        for task in (self._task, self._replayer):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def pending(self) -> int:
        """Events buffered in this process and not yet confirmed or spilled."""
        return len(self._buffer)

    async def spilled_backlog(self, context: str) -> int:
        """Entries waiting in ``context``'s spill stream."""
        if self._redis is None:
            return 0
        return int(await self._redis.xlen(self._stream(context)))
