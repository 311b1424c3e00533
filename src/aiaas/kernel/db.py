"""PostgreSQL through SQLAlchemy's async engine over asyncpg.

Each bounded context owns one schema and may be given its own database URL; contexts that share a URL
share one engine (one pool). Connections are tagged with the process role as ``application_name`` so
``pg_stat_activity`` tells api, streamer and worker apart.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from aiaas.kernel.config import CONTEXTS, Settings
from aiaas.kernel.tracing import instrument_engine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def context_metadata(schema: str) -> MetaData:
    """A MetaData bound to one context's schema, with stable constraint names for migrations."""
    if schema not in CONTEXTS:
        raise ValueError(f"unknown context schema {schema!r}")
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


def context_base(schema: str) -> type[DeclarativeBase]:
    """A declarative base whose tables live in ``schema``."""
    md = context_metadata(schema)

    class Base(DeclarativeBase):
        metadata = md

    Base.__name__ = f"{schema.capitalize()}Base"
    return Base


def _statement_name() -> str:
    return f"__aiaas_{uuid.uuid4().hex}__"


def make_engine(url: str, *, settings: Settings, role: str) -> AsyncEngine:
    """An async engine with a bounded pool, a statement timeout, the role as application_name and no JIT.

    PostgreSQL's JIT compiles a plan whose estimated cost passes ``jit_above_cost``, per execution:
    200-320 ms for the read side's histogram merge (the planner guesses 100 rows per ``jsonb_each``),
    which then runs in 10-30 ms. No query here runs long enough to win that back, so it is off.
    """
    server_settings = {"application_name": f"aiaas-{role}"}
    connect_args: dict[str, Any] = {"server_settings": server_settings, "timeout": 10}
    if settings.db_pgbouncer:
        # PgBouncer in transaction pooling mode: each transaction may run on another server connection.
        # It refuses startup parameters other than a few (application_name is one), so jit and the
        # statement timeout are set by PgBouncer's connect_query or on the database role (docs/database.md);
        # and no prepared statement may outlive its transaction: no statement caches, and unique names, so
        # two clients' statements never collide on one server connection.
        connect_args.update(statement_cache_size=0, prepared_statement_cache_size=0,
                            prepared_statement_name_func=_statement_name)
    else:
        server_settings["jit"] = "off"
        if settings.db_statement_timeout_ms:
            server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
        # A statement's bound values (password hashes, key hashes, emails) never go into an exception's
        # message, so they never reach a log line or a stack trace.
        hide_parameters=True,
    )
    instrument_engine(engine)
    return engine


_AFTER_COMMIT = "aiaas_after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` after ``session``'s unit of work commits (e.g. to drop a cache entry).

    Used for side effects that must not happen if the transaction rolls back, such as invalidating a
    cached principal: done before the commit, a concurrent request could re-cache the old row.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


class Database:
    """The engines and session factories of every context, one engine per distinct URL."""

    def __init__(self, settings: Settings, *, role: str) -> None:
        self._engines: dict[str, AsyncEngine] = {}
        self._by_context: dict[str, AsyncEngine] = {}
        for ctx in CONTEXTS:
            url = settings.database_url_for(ctx)
            if url not in self._engines:
                self._engines[url] = make_engine(url, settings=settings, role=role)
            self._by_context[ctx] = self._engines[url]
        self._sessions = {
            ctx: async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
            for ctx, engine in self._by_context.items()
        }

    def engine(self, context: str) -> AsyncEngine:
        """The engine serving ``context``."""
        return self._by_context[context]

    def sessionmaker(self, context: str) -> async_sessionmaker[AsyncSession]:
        """The session factory of ``context``."""
        return self._sessions[context]

    @asynccontextmanager
    async def unit_of_work(self, context: str) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits when the block ends cleanly and rolls back otherwise.

        Services never commit; the request handler or the consumer owns this unit of work. Callbacks
        registered with :func:`after_commit` run once the commit has succeeded (never after a rollback).
        """
        async with self._sessions[context]() as session:
            async with session.begin():
                yield session
            for callback in session.info.pop(_AFTER_COMMIT, ()):
                await callback()

    async def ping(self) -> None:
        """Run ``SELECT 1`` on every distinct engine; raises when one cannot answer."""
        for engine in self._engines.values():
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pool."""
        for engine in self._engines.values():
            await engine.dispose()
