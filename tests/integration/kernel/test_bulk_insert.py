"""``BulkInsert`` against PostgreSQL: what goes in comes back exactly, and the conflict clause holds."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import text

from aiaas.analytics.repository import mark_processed
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database


class TestRoundTrip:
    async def test_exact_values_back_and_a_second_insert_of_an_id_is_skipped(self, settings: Settings) -> None:
        db = Database(settings, role="test")
        org = uuid.uuid4()
        at = dt.datetime(2026, 12, 3, 11, 59, 59, 123_457, tzinfo=dt.UTC)
        rows = [{"event_id": uuid.uuid4(), "org_id": org, "occurred_at": at, "price_id": None,
                 "cost_usd": Decimal("12345678901234567890123.000000000000001")},
                {"event_id": uuid.uuid4(), "org_id": org, "occurred_at": at, "price_id": 2**40, "cost_usd": None}]
        try:
            async with db.unit_of_work("analytics") as s:
                assert await mark_processed(s, rows) == {r["event_id"] for r in rows}
            third = {**rows[1], "event_id": uuid.uuid4(), "price_id": 7}
            async with db.unit_of_work("analytics") as s:
                assert await mark_processed(s, [rows[0], third]) == {third["event_id"]}  # the known one skipped
                assert await mark_processed(s, []) == set()
            async with db.unit_of_work("analytics") as s:
                again = await mark_processed(s, rows)
                got = (await s.execute(text(
                    "SELECT event_id, occurred_at, price_id, cost_usd FROM analytics.processed_events "
                    "WHERE org_id = :o ORDER BY price_id NULLS FIRST"), {"o": org})).all()
        finally:
            await db.dispose()
        assert again == set()
        assert len(got) == 3
        assert got[0][1] == at and got[0][3] == Decimal("12345678901234567890123.000000000000001")
        assert [r[2] for r in got] == [None, 7, 2**40]
        assert got[2][3] is None
