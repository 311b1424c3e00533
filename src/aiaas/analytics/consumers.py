"""The projections' consumer of ``inference`` completion events (queue ``analytics``).

Handlers join a batch; the batch is applied in one transaction (processed-event record, the minute, hour
and day buckets, the newest-event time), then every handler returns and the broker acks. A batch closes
when it is full or ``max_wait`` after it opened (``AIAAS_ANALYTICS_BATCH_WAIT_SECONDS``, 1 s): a
transaction costs about ten statements whatever its size, so at a few events a second waiting for more
is what keeps the worker's CPU per event low, and analytics a second behind is still current. A crash before
the commit leaves the messages unacked, and their redelivery finds the events recorded as processed only
if the commit happened. A failed batch is retried event by event, so one bad event is retried and
dead-lettered alone; malformed events are dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import msgspec
from prometheus_client import Counter, Gauge, Histogram

from aiaas.analytics import service
from aiaas.analytics.service.ingest import UnitOfWork
from aiaas.analytics.service.projection import check_ids
from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.broker import Delivery, PoisonMessage, gather_outcomes
from aiaas.kernel.events import utcnow

log = logging.getLogger("aiaas.analytics.consumer")

EVENTS = Counter("aiaas_analytics_events_total", "Completion events handled by the projections, by outcome.",
                 ["outcome"])
COST = Counter("aiaas_analytics_cost_usd_total", "Cost of the requests applied to the projections (USD, by "
               "today's price book; unpriced requests add nothing).", ["model"])
BATCH = Histogram("aiaas_analytics_batch_size", "Events per projection transaction (a batch closes when full "
                  "or AIAAS_ANALYTICS_BATCH_WAIT_SECONDS after it opened).",
                  buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
STALENESS = Gauge("aiaas_analytics_projection_staleness_seconds",
                  "Now minus the time of the newest event applied to the projections.", multiprocess_mode="max")

_decoder = msgspec.json.Decoder(CompletionRecorded)


class ProjectionConsumer:
    """Applies completion events to the analytics projections in batches."""

    def __init__(self, *, unit_of_work: UnitOfWork, batch_size: int = 2000, max_wait: float = 0.1) -> None:
        self._uow = unit_of_work
        self._batch_size = batch_size
        self._max_wait = max_wait
        self._waiting: list[tuple[CompletionRecorded, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def handle(self, message: Delivery) -> None:
        """Subscription handler: returns once the event is applied and committed."""
        await self._enqueue(message)

    async def handle_many(self, messages: Sequence[Delivery]) -> list[BaseException | None]:
        """Batch handler (an envelope's events): each one's outcome, once all are applied and committed."""
        return await gather_outcomes(self._enqueue, messages)

    def _enqueue(self, message: Delivery) -> asyncio.Future[None]:
        try:
            event = _decoder.decode(message.body)
            check_ids(event)  # ids that are not UUIDs: poison now, not a failed batch later
        except (msgspec.DecodeError, msgspec.ValidationError, service.MalformedEvent) as exc:
            EVENTS.labels("poison").inc()
            raise PoisonMessage(str(exc)) from exc
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, done))
        if len(self._waiting) >= self._batch_size:
            self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="aiaas-analytics-batch")
        return done

    async def _run(self) -> None:
        while self._waiting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._max_wait):
                    await self._wake.wait()
            self._wake.clear()
            batch = self._waiting[: self._batch_size]
            del self._waiting[: self._batch_size]
            await self._apply(batch)

    async def _apply(self, batch: list[tuple[CompletionRecorded, asyncio.Future[None]]]) -> None:
        try:
            await self._commit([ev for ev, _ in batch])
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
            return
        except Exception:
            log.warning("projection batch of %d failed; applying its events one by one", len(batch), exc_info=True)
        for ev, done in batch:
            try:
                await self._commit([ev])
            except Exception as exc:  # alone: the broker retries it with backoff, then dead-letters it
                EVENTS.labels("failed").inc()
                if not done.done():
                    done.set_exception(exc)
            else:
                if not done.done():
                    done.set_result(None)

    async def _commit(self, events: list[CompletionRecorded]) -> None:
        async with self._uow() as session:
            book = await service.load_price_book(session)
            applied = await service.apply_events(session, events, book)
        BATCH.observe(len(events))
        EVENTS.labels("applied").inc(len(applied))
        EVENTS.labels("duplicate").inc(len(events) - len(applied))
        for p in applied:
            if p.cost_usd is not None:
                COST.labels(p.event.model).inc(float(p.cost_usd))
        newest = max(ev.occurred_at for ev in events)
        STALENESS.set(max(0.0, (utcnow() - newest).total_seconds()))


async def report_staleness(unit_of_work: UnitOfWork) -> None:
    """Set the staleness gauge from the newest applied event, shared by every worker process (a periodic
    job: between batches the gauge keeps growing, as the projections' age does)."""
    async with unit_of_work() as session:
        newest = await service.newest_applied(session)
    if newest is not None:
        STALENESS.set(max(0.0, (utcnow() - newest).total_seconds()))
