"""`aiaas migrate` creates the five schemas, is idempotent and safe to run concurrently."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import msgspec
import pytest

from aiaas.entrypoints.migrate import migrate
from aiaas.kernel.config import CONTEXTS, Settings


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def _schemas(url: str) -> set[str]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        rows = await conn.fetch("SELECT schema_name FROM information_schema.schemata")
        return {r["schema_name"] for r in rows}
    finally:
        await conn.close()


async def _drop(url: str, name: str) -> None:
    admin = _dsn(url).rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def fresh_settings(settings: Settings) -> Settings:
    name = f"aiaas_mig_{uuid.uuid4().hex[:8]}"
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    s = msgspec.structs.replace(settings, database_url=url)
    yield s
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop(url, name)).result()


class TestMigrate:
    def test_session_database_has_every_schema(self, settings: Settings) -> None:
        with ThreadPoolExecutor(1) as pool:
            schemas = pool.submit(asyncio.run, _schemas(settings.database_url)).result()
        assert set(CONTEXTS) <= schemas

    def test_concurrent_runs_on_a_missing_database(self, fresh_settings: Settings) -> None:
        # Four "pods" at once: one creates the database, all take the lock in turn, none fails.
        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(migrate, fresh_settings) for _ in range(4)]:
                f.result()
        migrate(fresh_settings)  # and once more, idempotent
        with ThreadPoolExecutor(1) as pool:
            schemas = pool.submit(asyncio.run, _schemas(fresh_settings.database_url)).result()
        assert set(CONTEXTS) <= schemas
