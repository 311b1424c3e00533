"""Every query of the ``usage`` context."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.usage.models import OrgPolicy, RequestRecord
from aiaas.usage.schemas import UsageFilter


async def insert_requests(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ledger rows in one statement; rows whose event id is already there are skipped.

    Returns how many rows were new.
    """
    if not rows:
        return 0
    stmt = insert(RequestRecord).values(list(rows)).on_conflict_do_nothing(index_elements=["event_id"])
    result = await session.execute(stmt.returning(RequestRecord.event_id))
    return len(result.scalars().all())


def _filtered(flt: UsageFilter) -> Any:
    stmt = select(RequestRecord).where(RequestRecord.org_id == uuid.UUID(flt.org_id))
    if flt.since is not None:
        stmt = stmt.where(RequestRecord.occurred_at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(RequestRecord.occurred_at < flt.until)
    if flt.model is not None:
        stmt = stmt.where(RequestRecord.model == flt.model)
    if flt.key_id is not None:
        stmt = stmt.where(RequestRecord.key_id == uuid.UUID(flt.key_id))
    if flt.user_id is not None:
        stmt = stmt.where(RequestRecord.user_id == uuid.UUID(flt.user_id))
    if flt.status is not None:
        stmt = stmt.where(RequestRecord.status == flt.status)
    return stmt


async def list_requests(
    session: AsyncSession, flt: UsageFilter, *, after: tuple[dt.datetime, uuid.UUID] | None, limit: int
) -> list[RequestRecord]:
    """Up to ``limit`` rows, newest first, strictly after the cursor ``(occurred_at, event_id)``."""
    stmt = _filtered(flt)
    if after is not None:
        at, eid = after
        stmt = stmt.where(or_(RequestRecord.occurred_at < at,
                              and_(RequestRecord.occurred_at == at, RequestRecord.event_id < eid)))
    stmt = stmt.order_by(RequestRecord.occurred_at.desc(), RequestRecord.event_id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars().all())


async def stream_requests(
    session: AsyncSession, flt: UsageFilter, *, batch: int = 1000
) -> AsyncIterator[RequestRecord]:
    """Every matching row, newest first, fetched in batches (for the CSV export)."""
    after: tuple[dt.datetime, uuid.UUID] | None = None
    while True:
        rows = await list_requests(session, flt, after=after, limit=batch)
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = (rows[-1].occurred_at, rows[-1].event_id)


async def get_policy(session: AsyncSession, org_id: uuid.UUID) -> OrgPolicy | None:
    """The stored policy of an org, if it has one."""
    return await session.get(OrgPolicy, org_id)


async def upsert_policy(session: AsyncSession, org_id: uuid.UUID, values: dict[str, Any]) -> OrgPolicy:
    """Create or replace an org's policy."""
    stmt = insert(OrgPolicy).values(org_id=org_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["org_id"], set_={**values, "updated_at": dt.datetime.now(dt.UTC)})
    await session.execute(stmt)
    row = await session.get(OrgPolicy, org_id, populate_existing=True)
    assert row is not None
    return row
