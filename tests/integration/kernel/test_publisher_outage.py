"""With RabbitMQ and Redis both unreachable the publisher keeps events in memory; only events beyond the
buffer's hard bound are dropped, and exactly those are counted. When RabbitMQ returns, the rest go out."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import msgspec
from aio_pika.abc import AbstractIncomingMessage

from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.publisher import EventPublisher
from aiaas.kernel.redis import Keys, make_redis
from support import TcpProxy, free_port
from usage_support import completion


class TestBothDown:
    async def test_memory_holds_then_delivers_and_counts_only_true_drops(self, settings: Settings) -> None:
        amqp = urlsplit(settings.amqp_url)
        proxy = TcpProxy(amqp.port or 5672, amqp.hostname or "127.0.0.1")
        await proxy.start()
        proxied = msgspec.structs.replace(settings, amqp_url=amqp._replace(
            netloc=f"{amqp.username}:{amqp.password}@127.0.0.1:{proxy.port}").geturl())
        broker = Broker(proxied)
        await broker.connect()
        dead_redis = make_redis(msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
        publisher = EventPublisher(broker, redis=dead_redis, keys=Keys(settings.redis_prefix), buffer_size=10,
                                   publish_timeout=0.5, replay_interval=0.1)
        got: set[str] = set()

        async def handler(msg: AbstractIncomingMessage) -> None:
            got.add(msg.message_id or "")

        direct = Broker(settings)
        stop = await direct.consume(Subscription(consumer="analytics", source="inference",
                                                 routing_keys=["completion.recorded"], handler=handler))
        org = "00000000-0000-0000-0000-000000000001"
        try:
            await proxy.cut()
            events = [completion(org) for _ in range(25)]
            for ev in events:
                publisher.emit("inference", ev)
            await asyncio.sleep(1.0)
            # Hard bound is twice the buffer: 20 kept, 5 truly dropped, and counted as such.
            assert publisher.pending == 20
            assert publisher.dropped == 5
            await proxy.restore()
            await publisher.flush(timeout=30)
            for _ in range(100):
                if len(got) >= 20:
                    break
                await asyncio.sleep(0.1)
        finally:
            await stop()
            await publisher.close()
            await broker.close()
            await direct.close()
            await dead_redis.aclose()
            await proxy.close()
        assert got == {ev.event_id for ev in events[:20]}
        assert publisher.dropped == 5
