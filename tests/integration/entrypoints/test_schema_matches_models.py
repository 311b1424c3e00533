"""The database the migrations build is exactly what the models (and so docs/database.md) describe."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import create_async_engine

from aiaas.entrypoints.docs import _models
from aiaas.kernel.config import CONTEXTS, Settings
from aiaas.kernel.db import NAMING_CONVENTION


def _metadata() -> MetaData:
    merged = MetaData(naming_convention=NAMING_CONVENTION)
    for context in CONTEXTS:
        for table in _models(context).Base.metadata.tables.values():
            table.to_metadata(merged)
    return merged


def _compare(conn: Any) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={
        "include_schemas": True, "compare_type": True,
        # Only the contexts' schemas, and no month partitions of the ledger (made at run time, not migrated).
        "include_name": lambda name, kind, parent: (name in CONTEXTS if kind == "schema" else
                                                    not (kind == "table" and (name or "").startswith("requests_")))})
    return list(compare_metadata(ctx, _metadata()))


async def test_migrations_build_exactly_the_models(settings: Settings) -> None:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(_compare)
    finally:
        await engine.dispose()
    assert diffs == [], "\n".join(map(str, diffs))
