"""The same event delivered twice (duplicate publish, replay, redelivery) is counted once; poison goes
to the dead-letter queue at once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.publisher import _encoder
from support import dead_lettered
from usage_support import completion, ledger_totals


async def _until(db: Database, org: str, rows: int) -> tuple[int, int, int, int]:
    for _ in range(200):
        totals = await ledger_totals(db, org)
        if totals[0] >= rows:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a duplicate, if it were counted, would land now
    return await ledger_totals(db, org)


class TestCountedOnce:
    async def test_duplicate_publish_is_one_row(self, running_worker: Container, db: Database) -> None:
        org = str(uuid.uuid4())
        ev = completion(org, prompt=7, completion_tokens=3)
        other = completion(org, prompt=1, completion_tokens=1)
        for e in (ev, ev, other, ev):
            await running_worker.broker.publish("inference", e.routing_key, _encoder.encode(e),
                                                message_id=e.event_id)
        assert await _until(db, org, 2) == (2, 8, 4, 12)

    async def test_replayed_spill_of_an_already_published_event_is_one_row(
        self, running_worker: Container, db: Database, settings: Settings
    ) -> None:
        org = str(uuid.uuid4())
        ev = completion(org, prompt=5, completion_tokens=5)
        pub = running_worker.publisher
        pub.emit("inference", ev)
        await pub.flush()
        # The same event also sits in the spill stream (a publish whose confirm was lost), then replays.
        assert await pub._spill([_pending(ev)]) == 1
        assert await pub.drain_spill(timeout=20)
        assert await _until(db, org, 1) == (1, 5, 5, 10)


class TestPoison:
    async def test_malformed_event_is_dead_lettered_and_others_go_on(
        self, running_worker: Container, db: Database, settings: Settings
    ) -> None:
        org = str(uuid.uuid4())
        await running_worker.broker.publish("inference", "completion.recorded", b'{"not": "an event"}',
                                            message_id="poison-" + org)
        good = completion(org)
        await running_worker.broker.publish("inference", good.routing_key, _encoder.encode(good),
                                            message_id=good.event_id)
        assert (await _until(db, org, 1))[0] == 1
        assert await dead_lettered(running_worker, "aiaas.usage.from.inference.dlq", "poison-" + org)


def _pending(ev: Any) -> Any:
    from aiaas.kernel.publisher import _Pending

    return _Pending("inference", ev.routing_key, ev.event_id, _encoder.encode(ev), ev.traceparent)


class TestOneConsumerPerProcess:
    async def test_a_worker_for_the_ledger_alone_leaves_the_projections_queue_to_another(
        self, settings: Settings, db: Database
    ) -> None:
        # AIAAS_WORKER_CONSUMERS=usage: this process records the ledger; the projections' queue keeps the
        # event for a worker that consumes it.
        import msgspec

        from aiaas.entrypoints.worker import ConsumerRuntime

        only_ledger = msgspec.structs.replace(settings, worker_consumers="usage")
        container = Container(only_ledger, role="worker")
        await container.start()
        runtime = ConsumerRuntime(container)
        await runtime.start()
        try:
            subs = runtime._subscriptions()
            assert [s.consumer for s in subs] == ["usage"]
            for _ in range(600):
                if runtime._stops:
                    break
                await asyncio.sleep(0.05)
            analytics = next(s for s in container.subscriptions() if s.consumer == "analytics")
            ch = await (await container.broker.connect()).channel()
            await container.broker.declare_subscription(analytics, ch)  # as its own worker would
            await ch.close()
            org = str(uuid.uuid4())
            ev = completion(org, prompt=4, completion_tokens=2)
            await container.broker.publish("inference", ev.routing_key, _encoder.encode(ev), message_id=ev.event_id)
            assert await _until(db, org, 1) == (1, 4, 2, 6)
            assert await container.broker.queue_depth(analytics) == 1
        finally:
            await runtime.stop()
            await container.stop()
