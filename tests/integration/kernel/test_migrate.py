"""`aiaas migrate` creates the five schemas, is idempotent and safe to run concurrently."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import pytest
from alembic.script import ScriptDirectory

from aiaas.entrypoints.migrate import database_urls, migrate, migrations_dir
from aiaas.kernel.config import CONTEXTS, Settings

# Alembic logs each revision it applies ("Running upgrade 0001 -> auth_0001, ...") on this logger.
ALEMBIC_LOG = "alembic.runtime.migration"
APPLIED = re.compile(r"^Running upgrade (?P<from>.*?) -> (?P<to>[^,\s]+)")


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def _fetch(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _query(url: str, query: str, *args: Any) -> list[Any]:
    with ThreadPoolExecutor(1) as pool:  # the test may run inside pytest-asyncio's loop
        return pool.submit(asyncio.run, _fetch(url, query, *args)).result()


async def _drop(url: str, name: str) -> None:
    admin = _dsn(url).rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def fresh_settings(settings: Settings) -> Iterator[Settings]:
    name = f"aiaas_mig_{uuid.uuid4().hex[:8]}"
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    s = msgspec.structs.replace(settings, database_url=url)
    yield s
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop(url, name)).result()


def _script(settings: Settings) -> ScriptDirectory:
    """The repository's migration scripts, found the way `aiaas migrate` finds them."""
    return ScriptDirectory(str(migrations_dir(settings)))


class _PerThread(logging.Handler):
    """Alembic's "Running upgrade" records, by the name of the thread (the "pod") that applied them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.applied: dict[str, list[str]] = collections.defaultdict(list)

    def emit(self, record: logging.LogRecord) -> None:
        if m := APPLIED.match(record.getMessage()):
            self.applied[record.threadName].append(m["to"])


@dataclass
class Run:
    error: BaseException | None
    applied: list[str]  # the revisions this run applied, in order


def _run_pods(settings: Settings, n: int) -> list[Run]:
    """``n`` concurrent ``migrate`` runs ("pods", each with its own connections) released at the same instant."""
    handler = _PerThread()
    logger = logging.getLogger(ALEMBIC_LOG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    barrier = threading.Barrier(n)
    errors: dict[str, BaseException] = {}

    def pod() -> None:
        try:
            barrier.wait(timeout=30)
            migrate(settings)
        except BaseException as exc:
            errors[threading.current_thread().name] = exc

    threads = [threading.Thread(target=pod, name=f"migrate-pod-{i}") for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive(), f"{t.name} still running"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return [Run(errors.get(t.name), handler.applied.get(t.name, [])) for t in threads]


class TestMigrate:
    def test_session_database_has_every_schema(self, settings: Settings) -> None:
        rows = _query(settings.database_url, "SELECT schema_name FROM information_schema.schemata")
        assert set(CONTEXTS) <= {r["schema_name"] for r in rows}
        versions = _query(settings.database_url, "SELECT version_num FROM public.alembic_version")
        assert sorted(r["version_num"] for r in versions) == sorted(_script(settings).get_heads())

    def test_concurrent_runs_on_a_missing_database(self, fresh_settings: Settings) -> None:
        url = fresh_settings.database_url
        assert database_urls(fresh_settings) == [url], "every context is expected on the one fresh database"
        script = _script(fresh_settings)
        heads = script.get_heads()
        revisions = [s.revision for s in script.walk_revisions()]
        assert len(heads) > 1, "the chain has a branch per context"

        # Four "pods" at once: one creates the database, all take the lock in turn, none fails.
        runs = _run_pods(fresh_settings, 4)
        assert [r.error for r in runs] == [None] * 4, [repr(r.error) for r in runs]
        applied = [r.applied for r in runs]
        # The lock is held for a whole upgrade: the first run to take it applies everything, the others
        # find nothing to do; together every revision ran exactly once.
        counts = collections.Counter(rev for revs in applied for rev in revs)
        assert counts == collections.Counter(revisions), applied
        assert sorted(map(len, applied)) == [0, 0, 0, len(revisions)], applied
        assert applied[[len(a) for a in applied].index(len(revisions))][0] == "0001"  # the base first

        # Once more, after the fact: nothing left to apply.
        (again,) = _run_pods(fresh_settings, 1)
        assert again.error is None and again.applied == [], again

        versions = [r["version_num"] for r in _query(url, "SELECT version_num FROM public.alembic_version")]
        assert sorted(versions) == sorted(heads)  # each head once, no stale or duplicate row

        schemas = [r["schema_name"] for r in _query(url, "SELECT schema_name FROM information_schema.schemata")]
        assert set(CONTEXTS) <= set(schemas)
        # A partition (of the usage ledger, one per month) is a table too; the models name only its parent.
        tables = collections.Counter(
            (r["table_schema"], r["table_name"]) for r in _query(
                url, "SELECT t.table_schema, t.table_name FROM information_schema.tables t "
                     "WHERE t.table_schema = ANY($1) AND NOT EXISTS (SELECT 1 FROM pg_class c "
                     "JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = t.table_schema AND c.relname = t.table_name AND c.relispartition)",
                list(CONTEXTS)))
        assert tables == collections.Counter(_model_tables()), tables


def _model_tables() -> list[tuple[str, str]]:
    """Every table of the contexts' models (what the migrations must have created), by (schema, name)."""
    from aiaas.analytics.models import Base as AnalyticsBase
    from aiaas.auth.models import Base as AuthBase
    from aiaas.inference.models import Base as InferenceBase
    from aiaas.orgs.models import Base as OrgsBase
    from aiaas.usage.models import Base as UsageBase

    return [(t.schema or "public", t.name) for base in (AuthBase, OrgsBase, InferenceBase, UsageBase, AnalyticsBase)
            for t in base.metadata.tables.values()]
