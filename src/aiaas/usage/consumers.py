"""The usage ledger's consumer of ``inference`` events.

RabbitMQ delivers up to ``prefetch`` messages at once (an envelope's events in one batch-handler call).
Every event is decoded and joins the current batch; the batch is written in **one transaction** (one
``INSERT ... ON CONFLICT (event_id, occurred_at) DO NOTHING`` of the whole batch, ``kernel.bulk``; a
row whose month has no ledger partition yet gets it, and the insert is tried once more) when it is full
or ``max_wait`` has passed, then the TPM corrections and quota settlements run in Redis (one pipeline,
idempotent per event id), and only then do the handlers return so the broker acks their messages. Up to
``concurrency`` batches are in flight at once under load (their rows are disjoint and every step is
idempotent per event, so their order does not matter). A crash anywhere before that leaves the messages
unacked: RabbitMQ redelivers them and the event-id key makes the second pass change nothing.

If a batch fails, its events are retried one by one so a single bad event cannot hold the others back;
the bad one's handler raises and the broker retries it with backoff, then dead-letters it. Undecodable
or malformed events are dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.broker import Delivery, PoisonMessage, gather_outcomes
from aiaas.kernel.events import utcnow
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable
from aiaas.usage import service

log = logging.getLogger("aiaas.usage.consumer")

LEDGER = Counter("aiaas_usage_ledger_events_total", "Completion events handled by the ledger, by outcome.",
                 ["outcome"])
BATCH = Histogram("aiaas_usage_ledger_batch_size", "Events per ledger transaction.",
                  buckets=(1, 2, 5, 10, 25, 50, 100, 200, 500))
LAG = Gauge("aiaas_usage_ledger_lag_seconds", "Age of the newest event in the last committed ledger batch.",
            multiprocess_mode="max")

_decoder = msgspec.json.Decoder(CompletionRecorded)

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# An event waiting for its batch: the event, its ledger row, and the handler's future.
_Pending = tuple[CompletionRecorded, dict[str, Any], asyncio.Future[None]]


class LedgerConsumer:
    """Batches completion events into the ledger and settles them in Redis."""

    def __init__(self, *, unit_of_work: UnitOfWork, redis: RedisClient, keys: Keys, batch_size: int = 200,
                 max_wait: float = 0.05, settle_retry_seconds: float = 20.0, concurrency: int = 3) -> None:
        self._uow = unit_of_work
        self._redis = redis
        self._keys = keys
        self._batch_size = batch_size
        self._max_wait = max_wait
        self._settle_retry = settle_retry_seconds
        self._pending: list[_Pending] = []
        self._full = asyncio.Event()
        self._concurrency = max(1, concurrency)
        self._flushers: set[asyncio.Task[None]] = set()

    async def handle(self, message: Delivery) -> None:
        """Subscription handler: returns once the event is committed and settled (then it is acked)."""
        await self._enqueue(message)

    async def handle_many(self, messages: Sequence[Delivery]) -> list[BaseException | None]:
        """Batch handler (an envelope's events): each one's outcome, once all are committed and settled."""
        return await gather_outcomes(self._enqueue, messages)

    def _enqueue(self, message: Delivery) -> asyncio.Future[None]:
        try:
            event = _decoder.decode(message.body)
            row = service.ledger_row(event)  # malformed ids: poison now, not a failed batch later
        except (msgspec.DecodeError, msgspec.ValidationError, service.PermanentEventError) as exc:
            LEDGER.labels("poison").inc()
            raise PoisonMessage(str(exc)) from exc
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, row, fut))
        if len(self._pending) >= self._batch_size:
            self._full.set()
        # One flusher while batches fill slowly; while full batches wait, more (up to ``concurrency``), so
        # one batch's database and Redis round trips overlap another's instead of queueing behind them.
        if not self._flushers or (len(self._pending) >= self._batch_size and len(self._flushers) < self._concurrency):
            task = asyncio.create_task(self._flush_soon(), name="aiaas-ledger-batch")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return fut

    async def idle(self) -> None:
        """Wait until no batch is being written (every flusher task has ended)."""
        while self._flushers:
            await asyncio.gather(*self._flushers, return_exceptions=True)

    async def _flush_soon(self) -> None:
        while self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self._max_wait)
            self._full.clear()
            batch, self._pending = self._pending[: self._batch_size], self._pending[self._batch_size:]
            if len(self._pending) >= self._batch_size:
                self._full.set()
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        events = [ev for ev, _, _ in batch]
        try:
            async with self._uow() as session:
                new = await service.record_completions(session, events, [row for _, row, _ in batch])
            LEDGER.labels("recorded").inc(new)
            LEDGER.labels("duplicate").inc(len(events) - new)
            BATCH.observe(len(events))
            committed = batch
        except Exception:
            log.warning("ledger batch of %d failed; retrying its events one by one", len(batch), exc_info=True)
            committed = []
            for ev, row, fut in batch:
                try:
                    async with self._uow() as session:
                        new = await service.record_completions(session, [ev], [row])
                    LEDGER.labels("recorded" if new else "duplicate").inc()
                    committed.append((ev, row, fut))
                except Exception as exc:  # this event fails alone: the broker retries it, then dead-letters
                    LEDGER.labels("failed").inc()
                    if not fut.done():
                        fut.set_exception(exc)
        if not committed:
            return
        newest = max(ev.occurred_at for ev, _, _ in committed)
        LAG.set(max(0.0, (utcnow() - newest).total_seconds()))
        try:
            await self._settle([ev for ev, _, _ in committed])
        except Exception as exc:
            for _, _, fut in committed:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for _, _, fut in committed:
            if not fut.done():
                fut.set_result(None)

    async def _settle(self, events: list[CompletionRecorded]) -> None:
        # A Redis blip must not dead-letter good events: keep the messages in hand and retry a while.
        deadline = time.monotonic() + self._settle_retry
        delay = 0.1
        while True:
            try:
                await service.settle(self._redis, self._keys, events)
                return
            except RedisUnavailable:
                if time.monotonic() >= deadline:
                    raise
                log.warning("Redis unavailable while settling %d events; retrying", len(events))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
