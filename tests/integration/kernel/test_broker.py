"""Publishing with confirms and consuming with ack-after-handler, over the real RabbitMQ."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.abc import AbstractIncomingMessage

from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.tracing import setup_tracing, tracer


@pytest.fixture
async def broker(settings: Settings):
    b = Broker(settings)
    await b.connect()
    yield b
    await b.close()


class TestRoundTrip:
    async def test_message_arrives_with_traceparent(self, broker: Broker) -> None:
        setup_tracing(Settings(), "test")
        got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def handler(msg: AbstractIncomingMessage) -> None:
            await got.put(msg)

        stop = await broker.consume(Subscription(consumer="usage", source="inference",
                                                 routing_keys=["test.rt"], handler=handler))
        try:
            with tracer("t").start_as_current_span("producer") as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                await broker.publish("inference", "test.rt", b'{"x":1}', message_id="m-1")
            msg = await asyncio.wait_for(got.get(), 10)
        finally:
            await stop()
        assert msg.body == b'{"x":1}'
        assert msg.message_id == "m-1"
        assert trace_id in str(msg.headers["traceparent"])
        assert msg.delivery_mode.value == 2  # persistent

    async def test_failing_handler_retries_then_dead_letters(self, broker: Broker, settings: Settings) -> None:
        attempts: list[int] = []

        async def handler(msg: AbstractIncomingMessage) -> None:
            attempts.append(1)
            raise ValueError("poison")

        stop = await broker.consume(Subscription(consumer="analytics", source="inference",
                                                 routing_keys=["test.poison"], handler=handler, max_attempts=3))
        try:
            await broker.publish("inference", "test.poison", b"{}", message_id="p-1")
            for _ in range(100):
                if len(attempts) >= 3:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
        finally:
            await stop()
        assert len(attempts) == 3
        conn = await broker.connect()
        ch = await conn.channel()
        dlq = await ch.declare_queue(f"{settings.broker_prefix}aiaas.analytics.from.inference.dlq", durable=True)
        msg = await dlq.get(timeout=5, fail=False)
        assert msg is not None and msg.message_id == "p-1"
        await msg.ack()
        await ch.close()
