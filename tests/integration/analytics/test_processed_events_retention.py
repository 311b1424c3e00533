"""The processed-event records are pruned with the ledger's retention, in batches; the buckets keep their
totals and a recent duplicate still adds nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import text

from aiaas.analytics import api as analytics_api
from aiaas.analytics import service
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from usage_support import completion

# Long before any other test's events: the pruning is global, and must touch only this test's records.
NOW = dt.datetime(1985, 6, 1, tzinfo=dt.UTC)


async def _records(db: Database, org: str) -> int:
    async with db.unit_of_work("analytics") as s:
        return int(await s.scalar(text("SELECT count(*) FROM analytics.processed_events WHERE org_id = :o"),
                                  {"o": org}) or 0)


async def _day_requests(db: Database, org: str) -> int:
    async with db.unit_of_work("analytics") as s:
        return int(await s.scalar(text("SELECT coalesce(sum(requests), 0) FROM analytics.usage_day "
                                       "WHERE org_id = :o"), {"o": org}) or 0)


class TestPruning:
    async def test_only_records_older_than_the_retention_go_and_totals_stay(self, settings: Settings) -> None:
        db = Database(settings, role="test")
        org = str(uuid.uuid4())
        try:
            old = [completion(org, occurred_at=NOW - dt.timedelta(days=100, minutes=i)) for i in range(25)]
            recent = [completion(org, occurred_at=NOW - dt.timedelta(days=39, minutes=i)) for i in range(5)]
            async with db.unit_of_work("analytics") as s:
                await service.apply_events(s, [*old, *recent])
            deleted = await analytics_api.prune_processed_events(lambda: db.unit_of_work("analytics"),
                                                                 retention_days=90, now=NOW, batch=10)
            assert deleted == 25
            assert await _records(db, org) == 5
            assert await _day_requests(db, org) == 30
            # A record younger than 40 days is kept even with a shorter retention: a duplicate adds nothing.
            assert await analytics_api.prune_processed_events(lambda: db.unit_of_work("analytics"),
                                                              retention_days=7, now=NOW) == 0
            async with db.unit_of_work("analytics") as s:
                assert await service.apply_events(s, recent) == []
            assert await _day_requests(db, org) == 30
        finally:
            await db.dispose()

    async def test_a_retention_below_a_day_is_refused(self, settings: Settings) -> None:
        with pytest.raises(ValueError):
            await analytics_api.prune_processed_events(lambda: None, retention_days=0)  # type: ignore[arg-type,return-value]
