"""The ledger is partitioned by month: a duplicate stays one row, a row of a month without a partition is
still recorded, retention drops only months wholly past the cut, and the migration keeps every row.

Tests that create or drop partitions run on a database of their own (migrated for the test), so no
other test sees their partitions come and go.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import msgspec
import pytest
from alembic import command
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from aiaas.entrypoints.bootstrap import Container
from aiaas.entrypoints.migrate import alembic_config, migrate
from aiaas.entrypoints.worker import LedgerMaintenance
from aiaas.inference.events import CompletionRecorded
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.publisher import _encoder
from aiaas.kernel.redis import Keys, RedisClient
from aiaas.usage import repository, service
from aiaas.usage.consumers import LedgerConsumer
from usage_support import completion, ledger_totals

UTC = dt.UTC


def _in_thread(fn: Any, *args: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:  # migrate() runs its own event loop; the test is inside one
        return pool.submit(fn, *args).result()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def _drop_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(_dsn(url).rsplit("/", 1)[0] + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def own_settings(settings: Settings) -> Iterator[Settings]:
    """Settings on a database of this test's own, not migrated yet."""
    name = f"aiaas_ledger_{uuid.uuid4().hex[:8]}"
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    yield msgspec.structs.replace(settings, database_url=url)
    _in_thread(asyncio.run, _drop_database(url, name))


@pytest.fixture
async def own_db(own_settings: Settings) -> AsyncIterator[Database]:
    """Engines on this test's own database, migrated to the newest revision."""
    await asyncio.to_thread(migrate, own_settings)
    d = Database(own_settings, role="test")
    yield d
    await d.dispose()


def _downgrade(settings: Settings, revision: str) -> None:
    async def run() -> None:
        engine = create_async_engine(settings.database_url)
        cfg = alembic_config(settings, settings.database_url)

        def down(conn: Connection) -> None:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)

        try:
            async with engine.connect() as conn:
                await conn.run_sync(down)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())


async def _partitions(db: Database) -> set[str]:
    async with db.unit_of_work("usage") as s:
        return {p.name for p in await repository.list_partitions(s)}


def _message(ev: CompletionRecorded) -> Any:
    return SimpleNamespace(body=_encoder.encode(ev), message_id=ev.event_id)


async def _consume(consumer: LedgerConsumer, events: list[CompletionRecorded]) -> None:
    """Hand ``events`` to the consumer at once (so they share a batch) and wait until all are acked."""
    # Every handler runs to its end, also when one fails, so none is left running after the test.
    results = await asyncio.gather(*(consumer.handle(_message(ev)) for ev in events), return_exceptions=True)
    await consumer.idle()
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _at(year: int, month: int, day: int = 1, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=UTC)


def _failed() -> float:
    return REGISTRY.get_sample_value("aiaas_usage_ledger_events_total", {"outcome": "failed"}) or 0.0


class TestDuplicatesAcrossBatches:
    async def test_a_redelivered_event_in_a_later_batch_stays_one_row(
        self, db: Database, redis_client: RedisClient, settings: Settings
    ) -> None:
        org = str(uuid.uuid4())
        consumer = LedgerConsumer(unit_of_work=lambda: db.unit_of_work("usage"), redis=redis_client,
                                  keys=Keys(settings.redis_prefix), batch_size=10)
        first = completion(org, prompt=7, completion_tokens=3, cached_prompt_tokens=4, reasoning_tokens=2)
        second = completion(org, prompt=1, completion_tokens=1)
        await _consume(consumer, [first, second])
        await _consume(consumer, [first])  # a redelivery, alone in its batch
        await _consume(consumer, [second, first, completion(org, prompt=2, completion_tokens=2)])
        assert await ledger_totals(db, org) == (3, 10, 6, 16)

        async with db.unit_of_work("usage") as s:
            row = (await s.execute(text(
                "SELECT cached_prompt_tokens, reasoning_tokens, occurred_at FROM usage.requests "
                "WHERE event_id = :e"), {"e": first.event_id})).one()
        assert (row[0], row[1]) == (4, 2)
        assert row[2] == first.occurred_at

    async def test_the_service_counts_only_new_rows(self, db: Database) -> None:
        org = str(uuid.uuid4())
        events = [completion(org) for _ in range(3)]
        async with db.unit_of_work("usage") as s:
            assert await service.record_completions(s, events[:2]) == 2
        async with db.unit_of_work("usage") as s:
            assert await service.record_completions(s, events) == 1
        assert (await ledger_totals(db, org))[0] == 3


class TestMonthWithoutPartition:
    async def test_events_from_long_ago_and_far_ahead_are_recorded_in_one_batch(
        self, own_db: Database, redis_client: RedisClient, settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        org = str(uuid.uuid4())
        past = completion(org, prompt=3, completion_tokens=1, occurred_at=_at(1999, 2, 28, 23))
        future = completion(org, prompt=5, completion_tokens=2, occurred_at=_at(2090, 12, 31, 23))
        now = completion(org, prompt=1, completion_tokens=1)
        assert not {"requests_199902", "requests_209012"} & await _partitions(own_db)
        failed = _failed()

        consumer = LedgerConsumer(unit_of_work=lambda: own_db.unit_of_work("usage"), redis=redis_client,
                                  keys=Keys(settings.redis_prefix), batch_size=10)
        with caplog.at_level(logging.INFO):
            await _consume(consumer, [past, future, now])

        assert await ledger_totals(own_db, org) == (3, 9, 4, 13)
        assert {"requests_199902", "requests_209012"} <= await _partitions(own_db)
        # Recorded by the batch's own retry: the batch did not fail over to event-by-event, none failed.
        assert _failed() == failed
        assert not [r for r in caplog.records if r.name == "aiaas.usage.consumer"], caplog.text
        assert "created ledger partitions requests_199902, requests_209012" in caplog.text
        async with own_db.unit_of_work("usage") as s:
            where = (await s.execute(text(
                "SELECT tableoid::regclass::text FROM usage.requests WHERE event_id = :e"),
                {"e": future.event_id})).scalar_one()
        assert where == "usage.requests_209012"

        # Once the partition is there, a redelivery of the same events is a duplicate, not a new row.
        await _consume(consumer, [past, future])
        assert (await ledger_totals(own_db, org))[0] == 3

    async def test_ensure_partitions_is_idempotent(self, own_db: Database) -> None:
        months = [dt.date(2001, 12, 5), dt.date(2002, 1, 1), dt.date(2001, 12, 31)]
        async with own_db.unit_of_work("usage") as s:
            assert await repository.ensure_partitions(s, months) == ["requests_200112", "requests_200201"]
        async with own_db.unit_of_work("usage") as s:
            assert await repository.ensure_partitions(s, months) == []
        parts = {p.name: p for p in await _list(own_db)}
        assert (parts["requests_200112"].lower, parts["requests_200112"].upper) == (_at(2001, 12), _at(2002, 1))


async def _list(db: Database) -> list[repository.LedgerPartition]:
    async with db.unit_of_work("usage") as s:
        return await repository.list_partitions(s)


async def _seed(db: Database, org: str, times: list[dt.datetime]) -> None:
    async with db.unit_of_work("usage") as s:
        await service.record_completions(s, [completion(org, occurred_at=t) for t in times])


async def _times(db: Database, org: str) -> list[dt.datetime]:
    async with db.unit_of_work("usage") as s:
        rows = await s.execute(text("SELECT occurred_at FROM usage.requests WHERE org_id = :o ORDER BY 1"),
                               {"o": org})
        return list(rows.scalars().all())


def _dropped() -> float:
    return REGISTRY.get_sample_value("aiaas_usage_ledger_partitions_dropped_total") or 0.0


class TestRetention:
    async def test_only_months_wholly_older_than_the_cut_are_dropped(self, own_db: Database) -> None:
        org = str(uuid.uuid4())
        times = [_at(2020, 3, 10), _at(2020, 4, 30, 23), _at(2020, 5, 2), _at(2020, 5, 20), _at(2020, 6, 1)]
        await _seed(own_db, org, times)
        before = _dropped()
        now = _at(2020, 6, 15, 12)  # 30 days: the cut is 2020-05-16 12:00, inside May

        async with own_db.unit_of_work("usage") as s:
            dropped = await service.drop_expired_partitions(s, retention_days=30, now=now)
        assert dropped == ["requests_202003", "requests_202004"]
        assert _dropped() == before + 2
        # May may hold rows newer than the cut, so all of May stays (its 2 May row with it).
        assert await _times(own_db, org) == [_at(2020, 5, 2), _at(2020, 5, 20), _at(2020, 6, 1)]
        names = await _partitions(own_db)
        assert {"requests_202005", "requests_202006"} <= names
        assert not {"requests_202003", "requests_202004"} & names

        async with own_db.unit_of_work("usage") as s:  # nothing more to do at the same instant
            assert await service.drop_expired_partitions(s, retention_days=30, now=now) == []
        assert _dropped() == before + 2

    async def test_a_month_ending_exactly_at_the_cut_is_dropped_the_next_is_kept(self, own_db: Database) -> None:
        org = str(uuid.uuid4())
        await _seed(own_db, org, [_at(2020, 4, 30, 23), _at(2020, 5, 1)])
        async with own_db.unit_of_work("usage") as s:
            dropped = await service.drop_expired_partitions(s, retention_days=10, now=_at(2020, 5, 11))
        assert dropped == ["requests_202004"]
        assert await _times(own_db, org) == [_at(2020, 5, 1)]

    async def test_without_a_retention_nothing_is_dropped(self, own_db: Database) -> None:
        org = str(uuid.uuid4())
        await _seed(own_db, org, [_at(2000, 1, 1)])
        async with own_db.unit_of_work("usage") as s:
            assert await service.drop_expired_partitions(s, retention_days=None) == []
        assert await _times(own_db, org) == [_at(2000, 1, 1)]

    async def test_a_rolled_back_drop_keeps_the_rows_and_is_not_counted(self, own_db: Database) -> None:
        org = str(uuid.uuid4())
        await _seed(own_db, org, [_at(2000, 1, 1)])
        before = _dropped()
        with pytest.raises(RuntimeError):
            async with own_db.unit_of_work("usage") as s:
                assert await service.drop_expired_partitions(s, retention_days=1) == ["requests_200001"]
                raise RuntimeError("the unit of work fails after the drop")
        assert _dropped() == before
        assert await _times(own_db, org) == [_at(2000, 1, 1)]


class TestWorkerMaintenance:
    async def test_makes_this_and_next_month_drops_expired_and_stops(
        self, own_db: Database, own_settings: Settings
    ) -> None:
        org = str(uuid.uuid4())
        await _seed(own_db, org, [_at(2001, 1, 15)])
        today = dt.datetime.now(UTC)
        this = repository.partition_name(today.date())
        nxt = repository.partition_name((today.replace(day=1) + dt.timedelta(days=32)).date())
        async with own_db.unit_of_work("usage") as s:  # as if the worker had been down for two months
            await s.execute(text(f'DROP TABLE usage."{nxt}"'))
        container = SimpleNamespace(db=own_db, settings=msgspec.structs.replace(
            own_settings, usage_ledger_retention_days=30))
        maintenance = LedgerMaintenance(cast(Container, container), interval=3600)
        await maintenance.start()
        try:
            for _ in range(200):
                names = await _partitions(own_db)
                if {this, nxt} <= names and "requests_200101" not in names:
                    break
                await asyncio.sleep(0.05)
        finally:
            task = maintenance._task
            await maintenance.stop()
        assert {this, nxt} <= names and "requests_200101" not in names, names
        assert await _times(own_db, org) == []
        assert task is not None and task.done()


KIND = "SELECT relkind::text FROM pg_class WHERE oid = 'usage.requests'::regclass"  # r: plain, p: partitioned


class TestMigration:
    async def test_rows_survive_a_downgrade_and_the_upgrade_to_partitions(self, own_settings: Settings) -> None:
        await asyncio.to_thread(migrate, own_settings)
        dsn = _dsn(own_settings.database_url)
        org = uuid.uuid4()
        conn = await asyncpg.connect(dsn)
        try:
            # A row written by the partitioned schema, then the way back to the plain table.
            await conn.execute(
                "INSERT INTO usage.requests (event_id, request_id, org_id, endpoint, model, prompt_tokens, "
                "completion_tokens, total_tokens, latency_ms, status, http_status, stream, occurred_at, "
                "cached_prompt_tokens) VALUES ($1, 'r0', $2, 'chat.completions', 'm', 1, 1, 2, 1.0, 'ok', 200, "
                "false, $3, 1)", uuid.uuid4(), org, dt.datetime.now(UTC))  # this month: its partition exists
            await asyncio.to_thread(_downgrade, own_settings, "usage_0001")
            assert await conn.fetchval(KIND) == "r"
            assert await conn.fetchval("SELECT count(*) FROM usage.requests WHERE org_id = $1", org) == 1

            # Rows of the plain table in several months, one far back, then the upgrade.
            times = [_at(2019, 3, 4, 5), _at(2025, 12, 31, 23), _at(2026, 1, 1), _at(2026, 1, 20)]
            for i, at in enumerate(times):
                await conn.execute(
                    "INSERT INTO usage.requests (event_id, request_id, org_id, user_id, key_id, endpoint, model, "
                    "deployment, provider, prompt_tokens, completion_tokens, total_tokens, ttfb_ms, latency_ms, "
                    "status, http_status, finish_reason, stream, reservation_id, started_at, occurred_at) VALUES "
                    "($1, $2, $3, $4, NULL, 'chat.completions', 'm', 'd', 'p', $5, 2, $5 + 2, 1.5, 9.5, 'ok', "
                    "200, 'stop', true, 'res', $6, $6)", uuid.uuid4(), f"r{i + 1}", org, uuid.uuid4(), i * 10, at)
            old = [dict(r) for r in await conn.fetch("SELECT * FROM usage.requests ORDER BY event_id")]
            assert len(old) == 5

            await asyncio.to_thread(migrate, own_settings)
            new = [dict(r) for r in await conn.fetch("SELECT * FROM usage.requests ORDER BY event_id")]
            assert [{k: v for k, v in r.items() if k not in ("cached_prompt_tokens", "reasoning_tokens")}
                    for r in new] == old
            assert {(r["cached_prompt_tokens"], r["reasoning_tokens"]) for r in new} == {(0, 0)}

            assert await conn.fetchval(KIND) == "p"
            parts = {r[0] for r in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'usage.requests'::regclass")}
            today = dt.datetime.now(UTC).date()
            nxt = (today.replace(day=1) + dt.timedelta(days=32))
            assert {"requests_201903", "requests_202512", "requests_202601", repository.partition_name(today),
                    repository.partition_name(nxt)} <= parts
            home = await conn.fetchval("SELECT tableoid::regclass::text FROM usage.requests WHERE request_id = 'r2'")
            assert home == "usage.requests_202512"
            pk = await conn.fetchval("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                     "WHERE conname = 'pk_requests' AND conrelid = 'usage.requests'::regclass")
            assert pk == "PRIMARY KEY (event_id, occurred_at)"
            indexes = {r[0] for r in await conn.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'usage' AND tablename = 'requests'")}
            assert {"pk_requests", "ix_requests_org_time", "ix_requests_org_key_time"} <= indexes
            assert not await conn.fetchval("SELECT to_regclass('usage.requests_unpartitioned') IS NOT NULL")
        finally:
            await conn.close()
