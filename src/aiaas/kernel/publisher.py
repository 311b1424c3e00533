"""Fire-and-forget publishing of integration events, off the request path.

``EventPublisher.emit`` is synchronous and never blocks or raises: it puts the event in a bounded
in-process buffer, and a background task publishes the buffer to RabbitMQ with confirms. Request
handlers call it after the response has been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from prometheus_client import Counter

from aiaas.kernel.broker import Broker
from aiaas.kernel.events import Event

log = logging.getLogger("aiaas.publisher")

EVENTS = Counter("aiaas_events_total", "Integration events by context and outcome.", ["context", "outcome"])

_encoder = msgspec.json.Encoder()


class EventPublisher:
    """A bounded buffer of events drained to the broker by one background task."""

    def __init__(self, broker: Broker, *, buffer_size: int = 10_000) -> None:
        self._broker = broker
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(maxsize=buffer_size)
        self._task: asyncio.Task[None] | None = None

    def emit(self, context: str, event: Event) -> None:
        """Queue ``event`` for publishing on ``context``'s exchange; never blocks the caller."""
        try:
            self._queue.put_nowait((context, event))
        except asyncio.QueueFull:
            EVENTS.labels(context, "dropped").inc()
            log.error("event buffer full; dropped %s %s", type(event).__name__, event.event_id)
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="aiaas-publisher")

    async def _drain(self) -> None:
        while not self._queue.empty():
            context, event = self._queue.get_nowait()
            body = _encoder.encode(event)
            delay = 0.2
            while True:
                try:
                    await self._broker.publish(context, type(event).routing_key, body, message_id=event.event_id,
                                               headers={"traceparent": event.traceparent} if event.traceparent
                                               else None)
                    EVENTS.labels(context, "confirmed").inc()
                    break
                except Exception as exc:  # broker down: keep the event and retry with backoff
                    log.warning("publish of %s failed (%s); retrying", event.event_id, type(exc).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            self._queue.task_done()

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until every buffered event is confirmed (or ``timeout`` passes)."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)

    @property
    def pending(self) -> int:
        """Events buffered and not yet confirmed."""
        return self._queue.qsize()
