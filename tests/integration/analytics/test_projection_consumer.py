"""The worker's projection consumer on real RabbitMQ: an event delivered several times is counted once,
a schema-1 event (no cached or reasoning tokens) is taken, poison is dead-lettered and the rest go on,
and the staleness gauge follows the newest applied event."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import msgspec
from prometheus_client import REGISTRY
from sqlalchemy import text

from aiaas.analytics.consumers import report_staleness
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.broker import ENVELOPE_HEADER, EnvelopedEvent, pack_envelope
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.publisher import _encoder
from support import dead_lettered
from usage_support import completion, ledger_totals


async def _day_totals(db: Database, org: str, want: int) -> tuple[int, int, int]:
    sql = text("SELECT coalesce(sum(requests), 0), coalesce(sum(prompt_tokens), 0), "
               "coalesce(sum(cached_prompt_tokens), 0) FROM analytics.usage_day WHERE org_id = :o")
    row: Any = (0, 0, 0)
    for _ in range(600):  # up to 30 s on a loaded machine
        async with db.unit_of_work("analytics") as s:
            row = (await s.execute(sql, {"o": org})).one()
        if row[0] >= want:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a duplicate, if it were counted, would land now
    async with db.unit_of_work("analytics") as s:
        row = (await s.execute(sql, {"o": org})).one()
    return int(row[0]), int(row[1]), int(row[2])


class TestProjectionConsumer:
    async def test_duplicates_once_old_schema_taken_poison_dead_lettered(
        self, running_worker: Container, settings: Settings
    ) -> None:
        db = Database(settings, role="test")
        org = str(uuid.uuid4())
        broker = running_worker.broker
        try:
            ev = completion(org, prompt=7, completion_tokens=3, cached_prompt_tokens=2)
            old = msgspec.json.decode(_encoder.encode(completion(org, prompt=5, completion_tokens=1)))
            old["schema_version"] = 1
            del old["cached_prompt_tokens"], old["reasoning_tokens"]
            bad_key = msgspec.json.decode(_encoder.encode(completion(org)))
            bad_key["key_id"] = "not-a-uuid"
            await broker.publish("inference", "completion.recorded", msgspec.json.encode(bad_key),
                                 message_id="poison-" + org)
            for e in (ev, ev, ev):
                await broker.publish("inference", e.routing_key, _encoder.encode(e), message_id=e.event_id)
            await broker.publish("inference", "completion.recorded", msgspec.json.encode(old),
                                 message_id=old["event_id"])
            assert await _day_totals(db, org, 2) == (2, 12, 2)

            assert await dead_lettered(running_worker, "aiaas.analytics.from.inference.dlq", "poison-" + org)

            await report_staleness(lambda: db.unit_of_work("analytics"))
            staleness = REGISTRY.get_sample_value("aiaas_analytics_projection_staleness_seconds")
            assert staleness is not None and 0 <= staleness < (dt.timedelta(hours=1)).total_seconds()
        finally:
            await db.dispose()

    async def test_an_envelope_through_both_consumers_counts_each_event_once_and_dead_letters_its_poison(
        self, running_worker: Container, settings: Settings
    ) -> None:
        # The worker's consumers take an envelope's events in one batch-handler call each: the good ones
        # are counted once (a duplicate inside the envelope too), the malformed one goes to each
        # consumer's dead-letter queue alone.
        db = Database(settings, role="test")
        org = str(uuid.uuid4())
        try:
            good = [completion(org, prompt=10 + i, completion_tokens=1) for i in range(3)]
            bad = msgspec.json.decode(_encoder.encode(completion(org)))
            bad["key_id"] = "not-a-uuid"
            bodies = [_encoder.encode(e) for e in good] + [msgspec.json.encode(bad), _encoder.encode(good[0])]
            await running_worker.broker.publish("inference", "completion.recorded", pack_envelope(bodies),
                                                message_id="env-" + org, headers={ENVELOPE_HEADER: len(bodies)})
            assert await _day_totals(db, org, 3) == (3, 33, 0)
            for _ in range(200):  # the ledger commits on its own schedule: up to 10 s
                if (await ledger_totals(db, org))[0] >= 3:
                    break
                await asyncio.sleep(0.05)
            assert await ledger_totals(db, org) == (3, 33, 3, 36)
            for queue in ("aiaas.analytics.from.inference.dlq", "aiaas.usage.from.inference.dlq"):
                assert await dead_lettered(running_worker, queue, bad["event_id"])
        finally:
            await db.dispose()


class TestBatchWindow:
    async def test_events_a_little_apart_share_one_transaction(self, settings: Settings) -> None:
        # At a few events a second, each event alone would cost a transaction of about ten statements;
        # the window (AIAAS_ANALYTICS_BATCH_WAIT_SECONDS) lets the ones that follow join the first.
        container = Container(msgspec.structs.replace(settings, analytics_batch_wait_seconds=1.0), role="worker")
        db = Database(settings, role="test")
        org = str(uuid.uuid4())
        try:
            (sub,) = [s for s in container.subscriptions() if s.consumer == "analytics"]
            before = _batches()
            pending = []
            for _ in range(5):
                ev = completion(org, prompt=3, completion_tokens=1)
                pending.append(asyncio.ensure_future(sub.handler(EnvelopedEvent(_encoder.encode(ev), ev.event_id))))
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*pending), 30)
            count, total = (a - b for a, b in zip(_batches(), before, strict=True))
            assert (count, total) == (1, 5)
            assert await _day_totals(db, org, 5) == (5, 15, 0)
        finally:
            await db.dispose()
            await container.stop()


def _batches() -> tuple[float, float]:
    """How many projection transactions there were, and how many events they applied."""
    count = REGISTRY.get_sample_value("aiaas_analytics_batch_size_count") or 0.0
    total = REGISTRY.get_sample_value("aiaas_analytics_batch_size_sum") or 0.0
    return count, total
