"""RabbitMQ through aio-pika: one durable topic exchange per publishing context, one durable queue per
consuming context, publisher confirms, persistent messages and ``traceparent`` in the headers.

Consumers ack only after their handler (and so its transaction) has finished; a failing message is
retried with a delay a bounded number of times and then dead-lettered to ``<queue>.dlq``.

Queues are **quorum queues** by default (``AIAAS_BROKER_QUEUE_TYPE``): replicated by Raft across a
RabbitMQ cluster, so events survive the loss of a node. A queue keeps the type it was created with
(RabbitMQ refuses to redeclare it as another), so a queue that already exists as the other type is
used as it is, with a warning; ``docs/runbooks/broker-down.md`` says how to move it.

**Envelopes.** A message may carry several events of one routing key: its body is a JSON array of the
events' own encodings and its ``x-aiaas-events`` header says how many (``EventPublisher`` packs what it
drains at once; one event alone still travels as a plain message). The broker unpacks an envelope and
runs the subscription's handler once per event, concurrently, so consumers see one event per call either
way (or, when the subscription has one, its batch handler once with all of them, sparing a task per
event). The envelope is acked once every event's handler has returned; events whose handler failed are
republished together as a smaller envelope with the next attempt count (or dead-lettered after the
last), and poison events go to the dead-letter queue alone, so one bad event never holds back, retries
or dead-letters its neighbours. Idempotency by event id absorbs the redelivery a crash before the ack
causes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
import msgspec
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind

from aiaas.kernel.config import Settings
from aiaas.kernel.tracing import extract_context, inject_headers, tracer

log = logging.getLogger("aiaas.broker")

RETRY_HEADER = "x-aiaas-attempt"
# Set on an envelope: the number of events in its JSON-array body.
ENVELOPE_HEADER = "x-aiaas-events"
# Set on what the broker dead-letters itself (part of an envelope): why, as x-death would say.
DEAD_REASON_HEADER = "x-aiaas-dead-reason"


class Delivery(Protocol):
    """What a handler gets: one event's body (a message, or one event of an envelope)."""

    @property
    def body(self) -> bytes: ...

    @property
    def message_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class EnvelopedEvent:
    """One event of an envelope, as its handler sees it: ``message_id`` is the event's id, as on a message
    that carries one event alone."""

    body: bytes
    message_id: str | None


class _EventId(msgspec.Struct):
    event_id: str | None = None


_event_id_decoder = msgspec.json.Decoder(_EventId)


def _event_id(body: bytes) -> str | None:
    """The ``event_id`` of an event's body (msgspec skips the other fields), or None."""
    try:
        return _event_id_decoder.decode(body).event_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


Handler = Callable[[Delivery], Awaitable[None]]
# A handler of all of an envelope's events at once: each event's outcome, in order (None: handled; an
# exception: what its handler would have raised). Saves a task per event when envelopes are large.
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[list[BaseException | None]]]

_envelope_decoder = msgspec.json.Decoder(list[msgspec.Raw])


async def gather_outcomes(enqueue: Callable[[Delivery], asyncio.Future[None]],
                          messages: Sequence[Delivery]) -> list[BaseException | None]:
    """A batch handler's outcomes from ``enqueue``, which takes one event into the consumer's batch and
    returns the future its commit resolves (or raises at once, ``PoisonMessage`` for a malformed event):
    each message's exception, or None once its future is done."""
    out: list[BaseException | None] = [None] * len(messages)
    waiting: list[tuple[int, asyncio.Future[None]]] = []
    for i, message in enumerate(messages):
        try:
            waiting.append((i, enqueue(message)))
        except Exception as exc:
            out[i] = exc
    if waiting:
        results = await asyncio.gather(*(f for _, f in waiting), return_exceptions=True)
        for (i, _), res in zip(waiting, results, strict=True):
            if isinstance(res, BaseException):
                out[i] = res
    return out


def pack_envelope(bodies: Sequence[bytes]) -> bytes:
    """The body of an envelope holding ``bodies`` (each one event's JSON encoding)."""
    return b"[" + b",".join(bodies) + b"]"


def unpack_envelope(body: bytes) -> list[bytes]:
    """The events' bodies in an envelope; ``PoisonMessage`` when it is not a JSON array."""
    try:
        return [bytes(raw) for raw in _envelope_decoder.decode(body)]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PoisonMessage(f"envelope is not a JSON array of events: {exc}") from exc


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never succeed (undecodable, malformed): it goes to the
    dead-letter queue at once instead of being retried."""


# Every exchange and queue this process declared, as (kind, name): tests delete their prefixed ones.
declared_names: set[tuple[str, str]] = set()


def exchange_name(prefix: str, context: str) -> str:
    """Name of the topic exchange a context publishes to."""
    return f"{prefix}aiaas.{context}"


def queue_name(prefix: str, consumer: str, source: str) -> str:
    """Name of the durable queue through which ``consumer`` receives ``source``'s events."""
    return f"{prefix}aiaas.{consumer}.from.{source}"


@dataclass(frozen=True)
class Subscription:
    """What a context consumes: events of ``source`` matching ``routing_keys``, handled by ``handler``."""

    consumer: str
    source: str
    routing_keys: Sequence[str]
    handler: Handler
    prefetch: int = 64
    max_attempts: int = 5
    batch_handler: BatchHandler | None = None


class Broker:
    """One robust connection per process; a confirm-mode channel for publishing."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.amqp_url
        self.prefix = settings.broker_prefix
        self.queue_type = settings.broker_queue_type
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._lock = asyncio.Lock()
        self._declare_lock = asyncio.Lock()  # FIFO: concurrent first publishers keep their order
        self._tracer = tracer("aiaas.broker")
        self._consumer_queues: tuple[Subscription, ...] = ()

    def declare_before_publishing(self, subs: Sequence[Subscription]) -> None:
        """Have the queues of ``subs`` declared on every new publishing channel, before anything is published.

        RabbitMQ drops a message no queue is bound for, so a publisher that reached the broker before any
        consumer (or only after an outage at start) would otherwise lose what it publishes first.
        """
        self._consumer_queues = tuple(subs)

    async def connect(self, *, timeout: float = 5.0) -> AbstractRobustConnection:
        """Open (once) the robust connection; it reconnects by itself after an outage."""
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self._url, timeout=timeout)
                self._channel = None
                self._exchanges.clear()
            return self._connection

    @property
    def connected(self) -> bool:
        """True while the connection is established (false during a reconnect)."""
        conn = self._connection
        return conn is not None and not conn.is_closed and conn.connected.is_set()

    async def ping(self, *, timeout: float) -> None:
        """Raise unless RabbitMQ is reachable now."""
        if self._connection is None:
            await asyncio.wait_for(self.connect(timeout=timeout), timeout)
        if not self.connected:
            raise ConnectionError("RabbitMQ connection is down")

    async def _publish_channel(self) -> AbstractChannel:
        conn = await self.connect()
        if self._channel is None or self._channel.is_closed:
            channel = await conn.channel(publisher_confirms=True)
            for sub in self._consumer_queues:
                await self.declare_subscription(sub, channel)
            self._channel = channel
            self._exchanges.clear()
        return self._channel

    async def declaring_channel(self) -> AbstractChannel:
        """A channel for declaring topology (the publishing channel)."""
        return await self._publish_channel()

    async def exchange(self, context: str) -> AbstractExchange:
        """The durable topic exchange of ``context`` (declared on first use).

        Concurrent first callers wait for one declaration, in the order they came: each declaring on its
        own, they would publish in the order their declarations returned, not the order they were called
        (a replayed spill stream came out of order that way).
        """
        ex = self._exchanges.get(context)
        if ex is not None:
            return ex
        async with self._declare_lock:
            ex = self._exchanges.get(context)
            if ex is None:
                channel = await self._publish_channel()
                ex = await channel.declare_exchange(
                    exchange_name(self.prefix, context), aio_pika.ExchangeType.TOPIC, durable=True
                )
                self._exchanges[context] = ex
                declared_names.add(("exchange", ex.name))
        return ex

    async def publish(
        self,
        context: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        headers: dict[str, Any] | None = None,
        timeout: float = 5.0,
    ) -> None:
        """Publish one persistent message and wait for the broker's confirm.

        The message carries the ``traceparent`` it is given (the request that produced the event) or the
        current span's. No producer span of our own: when spans are exported the aio-pika
        instrumentation records one, and otherwise it would be work for nothing on every event.
        """
        hdrs: dict[str, Any] = dict(headers or {})
        if "traceparent" not in hdrs:
            inject_headers(hdrs)
        ex = await self.exchange(context)
        await ex.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=hdrs,
            ),
            routing_key=routing_key,
            timeout=timeout,
        )

    async def _queue_arguments(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """``arguments`` with the configured queue type, or with the type ``name`` already has.

        The probe runs on a channel of its own: RabbitMQ closes a channel whose declaration it refuses.
        """
        wanted = {**arguments, "x-queue-type": self.queue_type}
        probe = await (await self.connect()).channel()
        try:
            await probe.declare_queue(name, durable=True, arguments=wanted)
            return wanted
        except aio_pika.exceptions.ChannelPreconditionFailed:
            other = "classic" if self.queue_type == "quorum" else "quorum"
            log.warning("queue %s exists as a %s queue, not %s; using it as it is (docs/runbooks/broker-down.md "
                        "says how to move it)", name, other, self.queue_type)
            return {**arguments, "x-queue-type": other}
        finally:
            if not probe.is_closed:
                await probe.close()

    async def declare_subscription(self, sub: Subscription, channel: AbstractChannel) -> AbstractQueue:
        """Declare the exchange, the queue (with its dead-letter queue) and the bindings of ``sub``."""
        qname = queue_name(self.prefix, sub.consumer, sub.source)
        dlx = await channel.declare_exchange(f"{qname}.dlx", aio_pika.ExchangeType.FANOUT, durable=True)
        dlq = await channel.declare_queue(f"{qname}.dlq", durable=True,
                                          arguments=await self._queue_arguments(f"{qname}.dlq", {}))
        await dlq.bind(dlx)
        source = await channel.declare_exchange(
            exchange_name(self.prefix, sub.source), aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            qname, durable=True,
            arguments=await self._queue_arguments(qname, {"x-dead-letter-exchange": f"{qname}.dlx"}),
        )
        for key in sub.routing_keys:
            await queue.bind(source, routing_key=key)
        declared_names.update({("exchange", dlx.name), ("queue", dlq.name), ("exchange", source.name),
                               ("queue", queue.name)})
        return queue

    async def consume(self, sub: Subscription) -> Callable[[], Awaitable[None]]:
        """Start consuming ``sub``; returns a coroutine function that stops it (letting in-flight finish)."""
        conn = await self.connect()
        # Confirms on: a retried or dead-lettered copy is confirmed before its original is acked.
        channel = await conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=sub.prefetch)
        queue = await self.declare_subscription(sub, channel)
        in_flight: set[asyncio.Task[None]] = set()

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                in_flight.add(task)
            try:
                await self._handle(sub, channel, message)
            finally:
                if task is not None:
                    in_flight.discard(task)

        tag = await queue.consume(on_message)

        async def stop() -> None:
            await queue.cancel(tag)
            if in_flight:
                await asyncio.wait(list(in_flight), timeout=30)
            await channel.close()

        return stop

    async def _handle(self, sub: Subscription, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        if ENVELOPE_HEADER in headers:
            await self._handle_envelope(sub, channel, message, headers)
            return
        ctx = extract_context({k: v for k, v in headers.items() if isinstance(v, str)})
        token = otel_context.attach(ctx)
        try:
            with self._tracer.start_as_current_span(
                f"{sub.source} process", kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "rabbitmq", "messaging.message.id": message.message_id or "",
                            "messaging.consumer.group.name": sub.consumer},
            ):
                try:
                    await sub.handler(message)
                except PoisonMessage as exc:
                    log.error("message %s is poison (%s); dead-lettered", message.message_id, exc)
                    await message.reject(requeue=False)
                    return
                except Exception:
                    attempt = int(headers.get(RETRY_HEADER, 1))
                    if attempt >= sub.max_attempts:
                        log.exception("message %s failed %d times; dead-lettered", message.message_id, attempt)
                        await message.reject(requeue=False)
                        return
                    log.warning("message %s failed (attempt %d); retrying", message.message_id, attempt,
                                exc_info=True)
                    await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
                    headers[RETRY_HEADER] = attempt + 1
                    retry = aio_pika.Message(
                        message.body, message_id=message.message_id, headers=headers,
                        content_type=message.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    )
                    # Republish to the queue itself through the default exchange, then drop the original:
                    # the copy carries the attempt count, which a plain requeue cannot.
                    await channel.default_exchange.publish(retry, routing_key=queue_name(
                        self.prefix, sub.consumer, sub.source))
                    await message.ack()
                    return
                await message.ack()
        finally:
            otel_context.detach(token)

    async def _handle_envelope(self, sub: Subscription, channel: AbstractChannel, message: AbstractIncomingMessage,
                               headers: dict[str, Any]) -> None:
        """Run the handler for every event of an envelope; ack it once each succeeded or was passed on."""
        qname = queue_name(self.prefix, sub.consumer, sub.source)
        attempt = int(headers.get(RETRY_HEADER, 1))
        with self._tracer.start_as_current_span(
            f"{sub.source} process", kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "rabbitmq", "messaging.message.id": message.message_id or "",
                        "messaging.consumer.group.name": sub.consumer,
                        "messaging.batch.message_count": int(headers.get(ENVELOPE_HEADER) or 0)},
        ):
            try:
                bodies = unpack_envelope(message.body)
            except PoisonMessage as exc:
                log.error("message %s is poison (%s); dead-lettered", message.message_id, exc)
                await message.reject(requeue=False)
                return
            deliveries = [EnvelopedEvent(body, _event_id(body)) for body in bodies]
            results: Sequence[object]
            if sub.batch_handler is not None:
                results = await sub.batch_handler(deliveries)
            else:
                results = await asyncio.gather(*(sub.handler(d) for d in deliveries), return_exceptions=True)
            poison: list[bytes] = []
            failed: list[bytes] = []
            reason = ""
            for body, res in zip(bodies, results, strict=True):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                if isinstance(res, PoisonMessage):
                    poison.append(body)
                    reason = reason or f"poison: {res}"
                elif isinstance(res, BaseException):
                    failed.append(body)
            keep = {k: v for k, v in headers.items() if k not in (RETRY_HEADER, ENVELOPE_HEADER, DEAD_REASON_HEADER)}
            if poison:
                log.error("%d of %d events in message %s are poison (%s); dead-lettered", len(poison), len(bodies),
                          message.message_id, reason)
                await self._send(channel, f"{qname}.dlx", "", poison, message,
                                 {**keep, DEAD_REASON_HEADER: reason[:500]})
            if failed and attempt >= sub.max_attempts:
                log.error("%d events in message %s failed %d times; dead-lettered", len(failed), message.message_id,
                          attempt)
                await self._send(channel, f"{qname}.dlx", "", failed, message,
                                 {**keep, RETRY_HEADER: attempt, DEAD_REASON_HEADER: f"failed {attempt} times"})
            elif failed:
                log.warning("%d events in message %s failed (attempt %d); retrying", len(failed), message.message_id,
                            attempt)
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
                await self._send(channel, "", qname, failed, message, {**keep, RETRY_HEADER: attempt + 1})
            await message.ack()

    @staticmethod
    async def _send(channel: AbstractChannel, exchange: str, routing_key: str, bodies: list[bytes],
                    original: AbstractIncomingMessage, headers: dict[str, Any]) -> None:
        """Publish ``bodies`` (events of ``original``) as one message, waiting for the confirm."""
        if len(bodies) > 1:
            body, headers = pack_envelope(bodies), {**headers, ENVELOPE_HEADER: len(bodies)}
            message_id = _event_id(bodies[0]) or original.message_id
        else:
            body = bodies[0]
            message_id = _event_id(body) or original.message_id
        ex = channel.default_exchange if not exchange else await channel.get_exchange(exchange, ensure=False)
        await ex.publish(
            aio_pika.Message(body, message_id=message_id, headers=headers,
                             content_type=original.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
        )

    async def queue_depth(self, sub: Subscription) -> int:
        """Messages ready in ``sub``'s queue (the consumer lag), read with a passive declare."""
        conn = await self.connect()
        channel = await conn.channel()
        try:
            queue = await channel.declare_queue(queue_name(self.prefix, sub.consumer, sub.source), passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()

    # ------------------------------------------------------------------ dead-letter queues (``aiaas dlq``)
    async def _declare_dlq(self, channel: AbstractChannel, sub: Subscription) -> AbstractQueue:
        name = f"{queue_name(self.prefix, sub.consumer, sub.source)}.dlq"
        return await channel.declare_queue(name, durable=True, arguments=await self._queue_arguments(name, {}))

    async def dlq_list(self, sub: Subscription, *, limit: int = 20) -> list[dict[str, Any]]:
        """Peek at up to ``limit`` dead-lettered messages of ``sub`` (they stay in the queue)."""
        conn = await self.connect()
        channel = await conn.channel()
        out: list[dict[str, Any]] = []
        held: list[AbstractIncomingMessage] = []
        try:
            dlq = await self._declare_dlq(channel, sub)
            while len(out) < limit:
                msg = await dlq.get(no_ack=False, fail=False, timeout=5)
                if msg is None:
                    break
                held.append(msg)
                deaths = (msg.headers or {}).get("x-death") or []
                reason = deaths[0].get("reason") if deaths and isinstance(deaths[0], dict) else None
                reason = (msg.headers or {}).get(DEAD_REASON_HEADER) or reason
                out.append({"message_id": msg.message_id, "routing_key": msg.routing_key,
                            "attempts": (msg.headers or {}).get(RETRY_HEADER, 1), "reason": reason,
                            "events": (msg.headers or {}).get(ENVELOPE_HEADER, 1),
                            "body": msg.body[:500].decode(errors="replace")})
        finally:
            for msg in held:
                await msg.nack(requeue=True)
            await channel.close()
        return out

    async def dlq_replay(self, sub: Subscription, *, limit: int | None = None) -> int:
        """Move dead-lettered messages of ``sub`` back to its queue with a fresh attempt count."""
        conn = await self.connect()
        channel = await conn.channel(publisher_confirms=True)
        moved = 0
        try:
            qname = queue_name(self.prefix, sub.consumer, sub.source)
            # The queue must exist, or the default exchange would silently drop the replayed copies.
            await self.declare_subscription(sub, channel)
            dlq = await self._declare_dlq(channel, sub)
            while limit is None or moved < limit:
                msg = await dlq.get(no_ack=False, fail=False, timeout=5)
                if msg is None:
                    break
                headers = {k: v for k, v in (msg.headers or {}).items()
                           if k not in (RETRY_HEADER, DEAD_REASON_HEADER, "x-death")}
                await channel.default_exchange.publish(
                    aio_pika.Message(msg.body, message_id=msg.message_id, headers=headers,
                                     content_type=msg.content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=qname,
                )
                await msg.ack()  # only after the copy is confirmed: a crash here duplicates, never loses
                moved += 1
        finally:
            await channel.close()
        return moved

    async def dlq_purge(self, sub: Subscription) -> int:
        """Delete every dead-lettered message of ``sub``; returns how many there were."""
        conn = await self.connect()
        channel = await conn.channel()
        try:
            dlq = await self._declare_dlq(channel, sub)
            result = await dlq.purge()
            return int(getattr(result, "message_count", 0) or 0)
        finally:
            await channel.close()

    async def close(self) -> None:
        """Close the connection (publishing channel included)."""
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()
        self._connection = None
