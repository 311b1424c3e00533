"""emit() returns at once and the event reaches a consumer through RabbitMQ."""

from __future__ import annotations

import asyncio

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.publisher import EventPublisher


class TestEmit:
    async def test_event_is_delivered(self, settings: Settings) -> None:
        broker = Broker(settings)
        publisher = EventPublisher(broker)
        got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def handler(msg: AbstractIncomingMessage) -> None:
            await got.put(msg)

        stop = await broker.consume(
            Subscription(
                consumer="analytics", source="inference", routing_keys=[CompletionRecorded.routing_key], handler=handler
            )
        )
        event = CompletionRecorded(
            request_id="req_1",
            org_id="o",
            user_id=None,
            key_id="k",
            endpoint="chat.completions",
            model="m",
            deployment="d",
            provider="p",
            prompt_tokens=3,
            completion_tokens=5,
            total_tokens=8,
            ttfb_ms=1.0,
            latency_ms=2.0,
            status="ok",
            http_status=200,
        )
        try:
            publisher.emit("inference", event)
            msg = await asyncio.wait_for(got.get(), 10)
        finally:
            await stop()
            await publisher.flush()
            await broker.close()
        decoded = msgspec.json.decode(msg.body, type=CompletionRecorded)
        assert decoded == event
        assert msg.message_id == event.event_id
