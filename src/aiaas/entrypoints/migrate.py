"""``aiaas migrate``: bring every database to the newest Alembic revision.

Idempotent, and safe to run from several pods at once: each run takes a PostgreSQL advisory lock on
the connection that migrates, so concurrent runs queue and the later ones find nothing to do. A missing
database is created first, so a fresh PostgreSQL needs no manual step.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from aiaas.kernel.config import CONTEXTS, Settings

log = logging.getLogger("aiaas.migrate")

# Arbitrary constant naming "aiaas schema migration" in pg_advisory_lock's 64-bit key space.
MIGRATION_LOCK_KEY = 0x61_69_61_61_73_6D_67  # "aiaasmg"


def migrations_dir(settings: Settings) -> Path:
    """Where the Alembic scripts are: the setting, the copy packaged in the wheel, or the source tree."""
    if settings.migrations_dir:
        return Path(settings.migrations_dir)
    import aiaas

    pkg = Path(aiaas.__file__).parent
    for candidate in (pkg / "_migrations", pkg.parents[1] / "migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("Alembic migrations not found; set AIAAS_MIGRATIONS_DIR")


def alembic_config(settings: Settings, url: str) -> Config:
    """An Alembic config pointing at our scripts and ``url`` (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(settings)))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def ensure_database(url: str) -> None:
    """Create the database named in ``url`` when it does not exist yet."""
    u = make_url(url)
    dsn = u.set(drivername="postgresql")
    try:
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False), timeout=10)
    except asyncpg.InvalidCatalogNameError:
        admin = dsn.set(database="postgres").render_as_string(hide_password=False)
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            name = u.database or ""
            await conn.execute(f'CREATE DATABASE "{name.replace(chr(34), "")}"')
            log.info("created database %s", name)
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another pod created it at the same moment
        finally:
            await conn.close()
        return
    await conn.close()


async def _upgrade(settings: Settings, url: str, revision: str) -> None:
    await ensure_database(url)
    engine = create_async_engine(url, connect_args={"server_settings": {"application_name": "aiaas-migrate"}})
    cfg = alembic_config(settings, url)

    def run(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await conn.commit()
            try:
                await conn.run_sync(run)
                await conn.commit()
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                await conn.commit()
    finally:
        await engine.dispose()


def database_urls(settings: Settings) -> list[str]:
    """Every distinct database URL the contexts use (each gets the full migration chain)."""
    seen: list[str] = []
    for ctx in CONTEXTS:
        url = settings.database_url_for(ctx)
        if url not in seen:
            seen.append(url)
    return seen


class MigrateThroughPooler(RuntimeError):
    """``aiaas migrate`` was pointed at PgBouncer in transaction mode, where its session lock means nothing."""


def migrate(settings: Settings, revision: str = "heads") -> None:
    """Upgrade every database the contexts use to ``revision`` (default: every context's head)."""
    if settings.db_pgbouncer:
        # The advisory lock that keeps two migrations apart is a session's, and DDL wants one connection:
        # behind transaction pooling neither holds. Refuse clearly instead of racing another pod.
        raise MigrateThroughPooler(
            "AIAAS_DB_PGBOUNCER is set: run `aiaas migrate` against PostgreSQL directly (or a session-pooled "
            "PgBouncer): AIAAS_DB_PGBOUNCER=false and AIAAS_DATABASE_URL (and any per-context URL) of the server")
    for url in database_urls(settings):
        asyncio.run(_upgrade(settings, url, revision))
