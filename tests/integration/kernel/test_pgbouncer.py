"""The platform's database layer through PgBouncer in transaction pooling mode (``AIAAS_DB_PGBOUNCER``).

A real PgBouncer (``tests/pgbouncer.py``) with two server connections for many clients: every transaction
may land on another server connection, so a statement prepared in one and used in another, or two
clients' statements of the same name, fail, as they would in a large install. Sign-up, the ledger and
the projections (concurrent batches), an API key's authentication and the ledger's listing all run
through it; without the setting, the same platform cannot even connect.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from types import SimpleNamespace

import msgspec
import pytest
from sqlalchemy import text

from aiaas.kernel.config import Settings
from pgbouncer import PgBouncer
from support import missing_tool
from usage_support import completion

pytestmark = pytest.mark.slow


@pytest.fixture
def pgbouncer(settings: Settings):
    if shutil.which("pgbouncer") is None and shutil.which("pgbouncer", path="/usr/sbin") is None:
        missing_tool("pgbouncer is not installed (apt-get install pgbouncer)")
    with PgBouncer(settings.database_url, pool_size=2) as pgb:
        yield pgb


def _through(settings: Settings, pgb: PgBouncer, *, pooler: bool) -> Settings:
    return msgspec.structs.replace(settings, database_url=pgb.url_for(settings.database_url), db_pgbouncer=pooler,
                                   local_model_enabled=False, db_pool_size=8)


def _message(ev: object) -> SimpleNamespace:
    return SimpleNamespace(body=msgspec.json.encode(ev), message_id=ev.event_id)  # type: ignore[attr-defined]


class TestTransactionPooling:
    async def test_sign_up_metering_projections_and_reads_work_through_it(
            self, settings: Settings, pgbouncer: PgBouncer) -> None:
        from aiaas.analytics.consumers import ProjectionConsumer
        from aiaas.entrypoints.bootstrap import Container
        from aiaas.entrypoints.setup import bootstrap
        from aiaas.usage.consumers import LedgerConsumer
        from aiaas.usage.schemas import UsageFilter
        from aiaas.usage.service.ledger import list_usage

        own = _through(settings, pgbouncer, pooler=True)
        made = await bootstrap(own, email=f"pgb-{uuid.uuid4().hex[:8]}@example.com",
                               password="pgbouncer-pass-1234", org_name="pgb", new_key=True)
        assert made.api_key
        container = Container(own, role="worker")
        try:
            ledger = LedgerConsumer(unit_of_work=container.session_factory("usage"), redis=container.redis,
                                    keys=container.keys, batch_size=7, concurrency=4)
            projections = ProjectionConsumer(unit_of_work=container.session_factory("analytics"), batch_size=9)
            events = [completion(made.org_id) for _ in range(120)]
            await asyncio.gather(*(ledger.handle(_message(ev)) for ev in events),
                                 *(projections.handle(_message(ev)) for ev in events))
            await ledger.idle()

            async def page() -> int:
                async with container.db.unit_of_work("usage") as session:
                    got = await list_usage(session, UsageFilter(org_id=made.org_id), cursor=None, limit=500)
                return len(got.data)

            # Many readers at once over two server connections, each statement in its own transaction.
            assert await asyncio.gather(*(page() for _ in range(12))) == [120] * 12
            async with container.db.unit_of_work("analytics") as session:
                applied = await session.scalar(text(
                    "SELECT count(*) FROM analytics.processed_events WHERE event_id = ANY(CAST(:ids AS uuid[]))"),
                    {"ids": [ev.event_id for ev in events]})
            assert applied == 120
            # The key bootstrap made authenticates through the pooler (a cold lookup: nothing cached yet).
            principal = await container.authenticator.authenticate(made.api_key)
            assert principal is not None and principal.org_id == made.org_id
        finally:
            await container.stop()

    async def test_without_the_setting_the_pooler_refuses_the_connection_clearly(
            self, settings: Settings, pgbouncer: PgBouncer) -> None:
        """What an operator who forgets AIAAS_DB_PGBOUNCER sees: PgBouncer's own words, at once."""
        from aiaas.kernel.db import Database

        db = Database(_through(settings, pgbouncer, pooler=False), role="api")
        try:
            with pytest.raises(Exception, match="unsupported startup parameter"):
                async with db.unit_of_work("usage") as session:
                    await session.execute(text("SELECT 1"))
        finally:
            await db.dispose()

    def test_migrate_refuses_to_run_through_it(self, settings: Settings, pgbouncer: PgBouncer) -> None:
        from aiaas.entrypoints.migrate import MigrateThroughPooler, migrate

        with pytest.raises(MigrateThroughPooler, match="run `aiaas migrate` against PostgreSQL directly"):
            migrate(_through(settings, pgbouncer, pooler=True))
