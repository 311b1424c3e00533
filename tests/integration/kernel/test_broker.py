"""Publishing with confirms and consuming with ack-after-handler, over the real RabbitMQ."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from aio_pika.abc import AbstractIncomingMessage

from aiaas.kernel.broker import (
    DEAD_REASON_HEADER,
    ENVELOPE_HEADER,
    RETRY_HEADER,
    Broker,
    PoisonMessage,
    Subscription,
    gather_outcomes,
    pack_envelope,
    unpack_envelope,
)
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
        dlq = await ch.declare_queue(f"{settings.broker_prefix}aiaas.dlq-test.from.inference.dlq", passive=True)
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


class TestEnvelopes:
    """Several events in one message: each gets its own handler call, and its own fate, whether the
    subscription handles them one call each or all in one batch handler's call."""

    @pytest.fixture(params=["one call per event", "a batch handler"], autouse=True)
    def _mode(self, request: pytest.FixtureRequest) -> None:
        self.batched = request.param == "a batch handler"

    async def _consume(self, broker: Broker, consumer: str, key: str, handler, *, max_attempts: int = 3):
        batch = None
        if self.batched:
            async def batch(messages):  # the consumers' shape: enqueue each, then wait for all
                return await gather_outcomes(lambda m: asyncio.ensure_future(handler(m)), messages)
        return await broker.consume(Subscription(consumer=consumer, source="inference", routing_keys=[key],
                                                 handler=handler, max_attempts=max_attempts, batch_handler=batch))

    async def _dlq(self, broker: Broker, settings: Settings, consumer: str) -> list[AbstractIncomingMessage]:
        conn = await broker.connect()
        ch = await conn.channel()
        try:
            dlq = await ch.declare_queue(f"{settings.broker_prefix}aiaas.{consumer}.from.inference.dlq", passive=True)
            out = []
            while (msg := await dlq.get(timeout=5, fail=False)) is not None:
                await msg.ack()
                out.append(msg)
            return out
        finally:
            await ch.close()

    async def test_each_event_is_handled_and_the_message_is_acked_once_all_are(
            self, broker: Broker, settings: Settings) -> None:
        seen: list[int] = []

        async def handler(msg) -> None:
            seen.append(msgspec.json.decode(msg.body)["n"])

        stop = await self._consume(broker, "env-ok", "test.env.ok", handler)
        try:
            body = pack_envelope([msgspec.json.encode({"n": n}) for n in range(5)])
            await broker.publish("inference", "test.env.ok", body, message_id="env-1", headers={ENVELOPE_HEADER: 5})
            for _ in range(100):
                if len(seen) == 5:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
        finally:
            await stop()
        assert sorted(seen) == [0, 1, 2, 3, 4]
        # Acked: nothing is left in the queue, nothing was dead-lettered.
        assert await broker.queue_depth(Subscription(consumer="env-ok", source="inference", routing_keys=[],
                                                     handler=handler)) == 0
        assert await self._peek_dlq_len(broker, settings, "env-ok") == 0

    async def test_poison_is_dead_lettered_alone_and_a_failing_event_is_retried_alone(
            self, broker: Broker, settings: Settings) -> None:
        calls: dict[int, int] = {}

        async def handler(msg) -> None:
            n = msgspec.json.decode(msg.body)["n"]
            calls[n] = calls.get(n, 0) + 1
            if n == 1:
                raise PoisonMessage("n=1 can never succeed")
            if n == 2 and calls[n] == 1:
                raise RuntimeError("a passing failure")

        stop = await self._consume(broker, "env-mixed", "test.env.mixed", handler)
        try:
            body = pack_envelope([msgspec.json.encode({"n": n}) for n in range(4)])
            await broker.publish("inference", "test.env.mixed", body, message_id="env-2", headers={ENVELOPE_HEADER: 4})
            for _ in range(100):
                if calls.get(2, 0) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            await stop()
        # The good ones once, the poison once, the failing one twice (retried alone, then fine).
        assert calls == {0: 1, 1: 1, 2: 2, 3: 1}
        dead = await self._dlq(broker, settings, "env-mixed")
        assert len(dead) == 1
        assert msgspec.json.decode(dead[0].body) == {"n": 1}  # alone, as a plain message
        assert ENVELOPE_HEADER not in (dead[0].headers or {})
        assert "never succeed" in str((dead[0].headers or {})[DEAD_REASON_HEADER])
        assert RETRY_HEADER not in (dead[0].headers or {})

    async def test_events_failing_every_attempt_are_dead_lettered_together_after_the_last(
            self, broker: Broker, settings: Settings) -> None:
        calls: list[int] = []

        async def handler(msg) -> None:
            n = msgspec.json.decode(msg.body)["n"]
            calls.append(n)
            if n >= 10:
                raise RuntimeError("always")

        stop = await self._consume(broker, "env-fail", "test.env.fail", handler, max_attempts=2)
        try:
            body = pack_envelope([msgspec.json.encode({"n": n}) for n in (0, 10, 11)])
            await broker.publish("inference", "test.env.fail", body, message_id="env-3", headers={ENVELOPE_HEADER: 3})
            for _ in range(100):
                if calls.count(10) >= 2 and calls.count(11) >= 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        finally:
            await stop()
        assert calls.count(0) == 1 and calls.count(10) == 2 and calls.count(11) == 2
        dead = await self._dlq(broker, settings, "env-fail")
        assert len(dead) == 1
        headers = dead[0].headers or {}
        assert headers[ENVELOPE_HEADER] == 2 and headers[RETRY_HEADER] == 2
        assert headers[DEAD_REASON_HEADER] == "failed 2 times"
        assert [msgspec.json.decode(b)["n"] for b in unpack_envelope(dead[0].body)] == [10, 11]

    async def test_an_envelope_that_is_not_an_array_is_dead_lettered_whole(
            self, broker: Broker, settings: Settings) -> None:
        calls: list[bytes] = []

        async def handler(msg) -> None:
            calls.append(msg.body)

        stop = await self._consume(broker, "env-bad", "test.env.bad", handler)
        try:
            await broker.publish("inference", "test.env.bad", b'{"n": 1}', message_id="env-4",
                                 headers={ENVELOPE_HEADER: 1})
            for _ in range(60):
                if await self._peek_dlq_len(broker, settings, "env-bad"):
                    break
                await asyncio.sleep(0.05)
        finally:
            await stop()
        assert calls == []
        dead = await self._dlq(broker, settings, "env-bad")
        assert [m.body for m in dead] == [b'{"n": 1}']

    async def _peek_dlq_len(self, broker: Broker, settings: Settings, consumer: str) -> int:
        conn = await broker.connect()
        ch = await conn.channel()
        try:
            q = await ch.declare_queue(f"{settings.broker_prefix}aiaas.{consumer}.from.inference.dlq", passive=True)
            return int(q.declaration_result.message_count or 0)
        finally:
            await ch.close()


class TestQueueTypes:
    async def test_queues_are_quorum_by_default_and_an_existing_classic_queue_is_kept(
            self, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
        """RabbitMQ refuses to redeclare a queue as another type: an install whose queues predate the setting
        keeps working, with a warning, instead of failing to start."""
        import aio_pika

        from aiaas.kernel.broker import queue_name

        assert settings.broker_queue_type == "quorum"
        broker = Broker(settings)
        conn = await broker.connect()
        try:
            channel = await conn.channel()
            classic = queue_name(settings.broker_prefix, "qtype-old", "inference")
            await channel.declare_queue(classic, durable=True,
                                        arguments={"x-dead-letter-exchange": f"{classic}.dlx"})
            sub = Subscription(consumer="qtype-old", source="inference", routing_keys=["test.qtype"],
                               handler=_noop)
            with caplog.at_level("WARNING", logger="aiaas.broker"):
                await broker.declare_subscription(sub, channel)
            assert any("exists as a classic queue" in r.getMessage() for r in caplog.records)
            assert not channel.is_closed
            new = Subscription(consumer="qtype-new", source="inference", routing_keys=["test.qtype"],
                               handler=_noop)
            await broker.declare_subscription(new, channel)
            # A quorum queue refuses a classic redeclaration, and the other way round: read the types so.
            fresh = queue_name(settings.broker_prefix, "qtype-new", "inference")
            for name, kind, args in ((fresh, "quorum", {"x-dead-letter-exchange": f"{fresh}.dlx"}),
                                     (f"{fresh}.dlq", "quorum", {}),
                                     (classic, "classic", {"x-dead-letter-exchange": f"{classic}.dlx"})):
                other = "classic" if kind == "quorum" else "quorum"
                probe = await conn.channel()
                await probe.declare_queue(name, durable=True, arguments={**args, "x-queue-type": kind})  # same: ok
                with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
                    await probe.declare_queue(name, durable=True, arguments={**args, "x-queue-type": other})
        finally:
            await broker.close()


async def _noop(msg) -> None:
    return None
