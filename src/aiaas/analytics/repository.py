"""Every query of the ``analytics`` context."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, delete, func, select, text, true, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics.models import (
    Price,
    ProcessedEvent,
    ProjectionState,
    UsageDay,
    UsageDayByModel,
    UsageHour,
    UsageHourByModel,
    UsageMinute,
    UsageMinuteByModel,
)
from aiaas.kernel.bulk import BulkInsert

TABLES: dict[str, Any] = {"minute": UsageMinute, "hour": UsageHour, "day": UsageDay}
MODEL_TABLES: dict[str, Any] = {"minute": UsageMinuteByModel, "hour": UsageHourByModel, "day": UsageDayByModel}
# Columns only the full buckets have: a query that uses none of them reads the ``*_by_model`` ones.
KEY_AND_USER = frozenset({"key_id", "user_id"})
SUMS = ("requests", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "reasoning_tokens", "cost_usd",
         "unpriced_requests", "unpriced_tokens", "latency_sum_ms")
HISTS = ("ttfb_hist", "latency_hist")
STATE = "projection"


# Batch writes send the batch as one JSON parameter (``kernel.bulk``): an executemany handed SQLAlchemy a
# parameter per cell, and PostgreSQL planned a VALUES list of thousands, for every batch.
_MARK_PROCESSED = BulkInsert(ProcessedEvent.__table__,  # type: ignore[arg-type]
                             ("event_id", "org_id", "occurred_at", "price_id", "cost_usd"),
                             conflict=("event_id",), returning="event_id")


async def mark_processed(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Record events as applied (``processed_events`` rows); returns the ids that were new (the others
    were applied before)."""
    return set(await _MARK_PROCESSED.execute(session, rows))


def _bucket_upsert(model: Any) -> BulkInsert:
    table = model.__table__
    keys = [c.name for c in table.primary_key.columns]
    merge = {name: f"t.{name} + EXCLUDED.{name}" for name in SUMS}
    merge.update({name: f"analytics.hist_merge(t.{name}, EXCLUDED.{name})" for name in HISTS})
    return BulkInsert(table, (*keys, *SUMS, *HISTS), conflict=keys, update=merge)


_UPSERTS = {(g, by_model): _bucket_upsert((MODEL_TABLES if by_model else TABLES)[g])
            for g in TABLES for by_model in (False, True)}


def _table(granularity: str, columns: Sequence[str]) -> Any:
    """The buckets a query of ``columns`` (grouped or filtered by) reads: the model-side ones unless it
    needs the API key or the user."""
    return (TABLES if KEY_AND_USER.intersection(columns) else MODEL_TABLES)[granularity]


async def add_to_buckets(session: AsyncSession, granularity: str, rows: Sequence[dict[str, Any]], *,
                         by_model: bool = False) -> None:
    """Add bucket rows (key columns, sums, histograms in stored form) to the stored buckets (the
    ``*_by_model`` ones with ``by_model``), creating the missing ones, in one statement. The caller sends
    rows in key order, one per key, so two workers adding to the same buckets lock them in the same
    order."""
    await _UPSERTS[granularity, by_model].execute(session, rows)


async def note_newest(session: AsyncSession, newest: dt.datetime) -> None:
    """Advance the newest applied event time (never moves back)."""
    stmt = insert(ProjectionState).values(name=STATE, newest_event_at=newest)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"newest_event_at": func.greatest(ProjectionState.newest_event_at, stmt.excluded.newest_event_at)})
    await session.execute(stmt)


async def newest_applied(session: AsyncSession) -> dt.datetime | None:
    """The newest event time applied to the projections, None before the first."""
    return await session.scalar(select(ProjectionState.newest_event_at).where(ProjectionState.name == STATE))


async def forget_from(session: AsyncSession, start: dt.datetime, *, org_id: uuid.UUID | None = None) -> None:
    """Delete every bucket and processed-event record (of one org) from ``start`` on (a rebuild's first
    step)."""
    for table in (*TABLES.values(), *MODEL_TABLES.values()):
        stmt = delete(table).where(table.bucket_start >= start)
        await session.execute(stmt.where(table.org_id == org_id) if org_id else stmt)
    stmt = delete(ProcessedEvent).where(ProcessedEvent.occurred_at >= start)
    await session.execute(stmt.where(ProcessedEvent.org_id == org_id) if org_id else stmt)


async def delete_processed_before(session: AsyncSession, cut: dt.datetime, *, limit: int) -> int:
    """Delete up to ``limit`` processed-event records older than ``cut`` (oldest first, by the time
    index); returns how many."""
    oldest = (select(ProcessedEvent.event_id).where(ProcessedEvent.occurred_at < cut)
              .order_by(ProcessedEvent.occurred_at).limit(limit))
    result = await session.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(oldest.scalar_subquery())))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def lock_for_rebuild(session: AsyncSession) -> None:
    """Hold consumers off the projections until this transaction ends (they wait on the record)."""
    await session.execute(text("LOCK TABLE analytics.processed_events IN SHARE ROW EXCLUSIVE MODE"))


# --------------------------------------------------------------------------- price book
async def list_prices(session: AsyncSession, model: str | None = None) -> Sequence[Price]:
    """Every price-book entry (of one model), oldest first."""
    stmt = select(Price).order_by(Price.model, Price.effective_from, Price.id)
    if model is not None:
        stmt = stmt.where(Price.model == model)
    return (await session.scalars(stmt)).all()


async def add_price(session: AsyncSession, values: dict[str, Any]) -> Price:
    """A new price-book entry."""
    row = Price(**values)
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


# --------------------------------------------------------------------------- reads
async def bucket_rows(session: AsyncSession, granularity: str, *, org_ids: Sequence[uuid.UUID] | None,
                      start: dt.datetime, end: dt.datetime, group_by: Sequence[str],
                      filters: dict[str, Sequence[Any]], by_bucket: bool = True,
                      after: tuple[Any, ...] | None = None, limit: int | None = None) -> Sequence[Any]:
    """Sums per (bucket_start, *group_by) (or per group_by alone) over the buckets in [start, end),
    ordered by that tuple, with ``errors`` (requests whose status is not ``ok``). ``after`` continues after
    a group (keyset pagination)."""
    table = _table(granularity, [*group_by, *filters])
    groups = [*([table.bucket_start] if by_bucket else []), *(getattr(table, g) for g in group_by)]
    cols = [*groups, *(func.sum(getattr(table, name)).label(name) for name in SUMS),
            func.coalesce(func.sum(table.requests).filter(table.status != "ok"), 0).label("errors")]
    stmt = select(*cols).where(table.bucket_start >= start, table.bucket_start < end)
    if org_ids is not None:
        stmt = stmt.where(table.org_id.in_(org_ids))
    for name, values in filters.items():
        stmt = stmt.where(getattr(table, name).in_(values))
    if after is not None and groups:
        stmt = stmt.where(tuple_(*groups) > tuple_(*after))
    if groups:
        stmt = stmt.group_by(*groups).order_by(*groups)
    if limit is not None:
        stmt = stmt.limit(limit)
    return (await session.execute(stmt)).all()


async def merged_histograms(session: AsyncSession, granularity: str, *, org_ids: Sequence[uuid.UUID] | None,
                            start: dt.datetime, end: dt.datetime, group_by: Sequence[str],
                            filters: dict[str, Sequence[Any]]) -> Sequence[Any]:
    """Both histograms merged per group over the buckets in [start, end), in one scan and in PostgreSQL
    (no histogram leaves the database): rows of (*group_by, histogram column name, bucket index, count)."""
    table = _table(granularity, [*group_by, *filters])
    groups = [getattr(table, g) for g in group_by]
    both = func.jsonb_build_object(*(x for name in HISTS for x in (name, getattr(table, name))))
    hist = func.jsonb_each(both).table_valued("key", "value").alias("hist")
    entry = func.jsonb_each_text(hist.c.value).table_valued("key", "value").alias("entry")
    index = func.cast(entry.c.key, BigInteger).label("bucket")
    stmt = (select(*groups, hist.c.key.label("hist"), index, func.sum(func.cast(entry.c.value, BigInteger)))
            .select_from(table).join(hist, true()).join(entry, true())
            .where(table.bucket_start >= start, table.bucket_start < end))
    if org_ids is not None:
        stmt = stmt.where(table.org_id.in_(org_ids))
    for name, values in filters.items():
        stmt = stmt.where(getattr(table, name).in_(values))
    return (await session.execute(stmt.group_by(*groups, hist.c.key, index))).all()
