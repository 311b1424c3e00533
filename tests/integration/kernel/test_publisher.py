"""emit() returns at once and the event reaches a consumer through RabbitMQ."""

from __future__ import annotations

import asyncio

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.publisher import EventPublisher


def _event(request_id: str) -> CompletionRecorded:
    return CompletionRecorded(request_id=request_id, org_id="o", user_id=None, key_id="k", endpoint="chat.completions",
                              model="m", deployment="d", provider="p", prompt_tokens=3, completion_tokens=5,
                              total_tokens=8, ttfb_ms=1.0, latency_ms=2.0, status="ok", http_status=200)


class TestEmit:
    async def test_event_is_delivered(self, settings: Settings) -> None:
        broker = Broker(settings)
        publisher = EventPublisher(broker)
        got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def handler(msg: AbstractIncomingMessage) -> None:
            await got.put(msg)

        stop = await broker.consume(
            Subscription(
                consumer="emit-test", source="inference", routing_keys=[CompletionRecorded.routing_key], handler=handler
            )
        )
        event = _event("req_1")
        try:
            publisher.emit("inference", event)
            msg = await asyncio.wait_for(got.get(), 10)
        finally:
            await stop()
            await publisher.close()
            await broker.close()
        decoded = msgspec.json.decode(msg.body, type=CompletionRecorded)
        assert decoded == event
        assert msg.message_id == event.event_id


class TestLinger:
    async def test_a_linger_gathers_events_into_one_later_batch(self, settings: Settings) -> None:
        """``AIAAS_EVENT_LINGER_MS``: once idle, the publisher waits out the linger, then sends what gathered."""
        broker = Broker(settings)
        publisher = EventPublisher(broker, linger=1.0)
        got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def handler(msg: AbstractIncomingMessage) -> None:
            await got.put(msg)

        stop = await broker.consume(Subscription(consumer="linger-test", source="inference",
                                                 routing_keys=[CompletionRecorded.routing_key], handler=handler))
        events = [_event(f"req_l{i}") for i in range(3)]
        try:
            publisher.emit("inference", _event("req_first"))
            await publisher.flush()  # confirmed: the publisher is idle again
            await asyncio.wait_for(got.get(), 10)
            loop = asyncio.get_running_loop()
            emitted = loop.time()
            for event in events:
                publisher.emit("inference", event)
            arrivals = []
            for _ in events:
                msg = await asyncio.wait_for(got.get(), 10)
                arrivals.append((loop.time(), msgspec.json.decode(msg.body, type=CompletionRecorded).event_id))
        finally:
            await stop()
            await publisher.close()
            await broker.close()
        assert {eid for _, eid in arrivals} == {e.event_id for e in events}
        # None went before the linger was out, however slow the machine (a clock, not a sleep, decides).
        assert min(t for t, _ in arrivals) - emitted >= 1.0


class TestEnvelopesOnTheWire:
    async def test_a_burst_travels_in_few_messages_and_every_event_arrives(self, settings: Settings) -> None:
        from aiaas.kernel.broker import ENVELOPE_HEADER, exchange_name

        broker = Broker(settings)
        publisher = EventPublisher(broker, envelope_size=50)
        seen: list[str] = []

        async def handler(msg) -> None:
            seen.append(msgspec.json.decode(msg.body, type=CompletionRecorded).event_id)

        stop = await broker.consume(Subscription(consumer="envelope-test", source="inference",
                                                 routing_keys=[CompletionRecorded.routing_key], handler=handler))
        # A second queue on the same exchange counts what travels on the wire (exclusive: gone with the channel).
        channel = await (await broker.connect()).channel()
        wire = await channel.declare_queue(exclusive=True)
        await wire.bind(exchange_name(settings.broker_prefix, "inference"), routing_key=CompletionRecorded.routing_key)
        events = [_event(f"req_{n}") for n in range(200)]
        try:
            for event in events:  # all emitted before the drain task runs: one round of 200
                publisher.emit("inference", event)
            await publisher.flush()
            for _ in range(200):
                if set(seen) >= {e.event_id for e in events}:
                    break
                await asyncio.sleep(0.05)
            messages = []
            while (msg := await wire.get(timeout=5, fail=False)) is not None:
                await msg.ack()
                messages.append(msg)
        finally:
            await stop()
            await channel.close()
            await publisher.close()
            await broker.close()
        assert set(seen) == {e.event_id for e in events}
        # 200 events in envelopes of at most 50 (a spill and replay under load may add a few more messages).
        assert 4 <= len(messages) <= 12
        counts = [int((m.headers or {}).get(ENVELOPE_HEADER, 1)) for m in messages]
        assert max(counts) == 50 and sum(counts) >= 200
        first = msgspec.json.decode(messages[0].body)
        assert isinstance(first, list) and first[0]["event_id"] == events[0].event_id
