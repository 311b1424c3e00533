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

        stop = await broker.consume(Subscription(consumer="roundtrip-test", source="inference",
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

        stop = await broker.consume(Subscription(consumer="dlq-test", source="inference",
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
        dlq = await ch.declare_queue(f"{settings.broker_prefix}aiaas.dlq-test.from.inference.dlq", durable=True)
        msg = await dlq.get(timeout=5, fail=False)
        assert msg is not None and msg.message_id == "p-1"
        await msg.ack()
        await ch.close()


class TestPublisherDeclaresConsumerQueues:
    async def test_events_of_a_streamer_started_before_any_worker_are_kept(self, settings: Settings) -> None:
        """RabbitMQ drops what no queue is bound for: the streamer declares the worker's queue itself."""
        import uuid

        import aio_pika
        import msgspec

        from aiaas.entrypoints.bootstrap import Container
        from aiaas.inference.events import CompletionRecorded
        from aiaas.kernel.broker import queue_name

        own = msgspec.structs.replace(settings, broker_prefix=f"{settings.broker_prefix}fresh-{uuid.uuid4().hex[:6]}.",
                                      local_model_enabled=False)
        streamer = Container(own, role="streamer")
        await streamer.start()
        try:
            event = CompletionRecorded(request_id="req_x", org_id=str(uuid.uuid4()), user_id=None, key_id=None,
                                       endpoint="chat.completions", model="m", deployment="d", provider="p",
                                       prompt_tokens=1, completion_tokens=2, total_tokens=3, ttfb_ms=1.0,
                                       latency_ms=2.0, status="ok", http_status=200)
            streamer.publisher.emit("inference", event)
            # On a loaded machine the first publish can time out and spill to Redis; kept means published
            # once the spill is replayed, so wait for that, not only for the buffer.
            assert await streamer.publisher.drain_spill(timeout=30)
        finally:
            await streamer.stop()
        conn = await aio_pika.connect(own.amqp_url)
        try:
            channel = await conn.channel()
            queue = await channel.declare_queue(queue_name(own.broker_prefix, "usage", "inference"), passive=True)
            msg = await queue.get(timeout=5)
            assert msg is not None and msgspec.json.decode(msg.body)["event_id"] == event.event_id
            await msg.ack()
        finally:
            await conn.close()
