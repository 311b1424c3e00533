"""The worker's consumer-lag gauge follows its queue, and stopping it never waits on a probe."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from prometheus_client import REGISTRY

from aiaas.entrypoints.bootstrap import Container
from aiaas.entrypoints.worker import ConsumerRuntime
from aiaas.kernel.config import Settings


async def test_lag_gauge_reports_the_queue_depth(settings: Settings) -> None:
    own = msgspec.structs.replace(settings, broker_prefix=f"{settings.broker_prefix}lag-{uuid.uuid4().hex[:6]}.")
    container = Container(own, role="worker")
    runtime = ConsumerRuntime(container)
    sub = container.subscriptions()[0]
    try:
        channel = await container.broker.declaring_channel()
        await container.broker.declare_subscription(sub, channel)
        for i in range(3):
            await container.broker.publish(sub.source, sub.routing_keys[0], b"{}", message_id=f"lag-{i}")
        watcher = asyncio.create_task(runtime._watch_lag(interval=0.05))
        labels = {"consumer": sub.consumer, "source": sub.source}
        for _ in range(100):
            if REGISTRY.get_sample_value("aiaas_consumer_lag_messages", labels) == 3:
                break
            await asyncio.sleep(0.05)
        assert REGISTRY.get_sample_value("aiaas_consumer_lag_messages", labels) == 3
        runtime._lag_task = watcher
        await asyncio.wait_for(runtime.stop(), 10)
        assert watcher.done()
    finally:
        await container.stop()
