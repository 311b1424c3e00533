"""Every query of the ``usage`` context."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import and_, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel.bulk import BulkInsert
from aiaas.usage.models import OrgPolicy, RequestRecord
from aiaas.usage.schemas import UsageFilter

_LEDGER_COLUMNS = ("event_id", "request_id", "org_id", "user_id", "key_id", "endpoint", "model", "deployment",
                   "provider", "prompt_tokens", "completion_tokens", "total_tokens", "cached_prompt_tokens",
                   "reasoning_tokens", "ttfb_ms", "latency_ms", "status", "http_status", "finish_reason",
                   "error_type", "stream", "reservation_id", "started_at", "occurred_at")
# The whole batch as one JSON parameter (``kernel.bulk``): an executemany handed SQLAlchemy a parameter per
# cell, most of the worker's CPU when it drained a backlog.
_INSERT_REQUESTS = BulkInsert(RequestRecord.__table__, _LEDGER_COLUMNS,  # type: ignore[arg-type]
                              conflict=("event_id", "occurred_at"), returning="event_id")


async def insert_requests(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ledger rows (every key of ``usage.service.ledger_row``) in one statement; rows whose event id
    is already there are skipped.

    Returns how many rows were new. Raises ``DBAPIError`` (see ``is_missing_partition``) when a row's
    month has no partition yet.
    """
    return len(await _INSERT_REQUESTS.execute(session, rows))


# --------------------------------------------------------------------------- ledger partitions
# One partition per UTC calendar month, named requests_YYYYMM, FROM the month's first instant TO the next's.
_PARTITION_NAME = re.compile(r"^requests_(\d{4})(\d{2})$")
# Arbitrary constant naming "usage ledger partition DDL" in pg_advisory_xact_lock's key space: concurrent
# CREATE TABLE IF NOT EXISTS of one name can still collide in the catalog, so workers take turns.
_PARTITION_LOCK_KEY = 0x75_73_67_70_61_72_74  # "usgpart"


class LedgerPartition(NamedTuple):
    """One monthly partition of the ledger and the range of ``occurred_at`` it holds, ``[lower, upper)``."""

    name: str
    lower: dt.datetime
    upper: dt.datetime


def partition_name(month: dt.date) -> str:
    """The name of the partition holding ``month`` (any day of it): ``requests_YYYYMM``."""
    return f"requests_{month.year:04d}{month.month:02d}"


def _bounds(month: dt.date) -> tuple[str, str]:
    # Built from integers, not dates: December 9999 ends in year 10000, which datetime cannot hold.
    nxt = (month.year + 1, 1) if month.month == 12 else (month.year, month.month + 1)
    return (f"{month.year:04d}-{month.month:02d}-01 00:00:00+00", f"{nxt[0]:04d}-{nxt[1]:02d}-01 00:00:00+00")


def is_missing_partition(exc: BaseException) -> bool:
    """Whether a failed insert was refused because a row's month has no partition.

    PostgreSQL reports "no partition of relation ... found for row" as a check violation (sqlstate
    23514); the ledger has no CHECK constraint, so that state means a missing partition.
    """
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == "23514"


async def _lock_partition_ddl(session: AsyncSession, lock_timeout_ms: int | None) -> None:
    if lock_timeout_ms is not None:
        # Creating or dropping a partition locks the whole ledger; waiting long behind a slow reader would
        # queue every insert and listing behind us. Give up instead: the caller retries later.
        await session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PARTITION_LOCK_KEY})


async def ensure_partitions(session: AsyncSession, months: Iterable[dt.date], *,
                            lock_timeout_ms: int | None = None) -> list[str]:
    """Create the partitions of ``months`` (any day of each month names it) that do not exist yet.

    Returns the names of the partitions created. ``lock_timeout_ms`` bounds the wait for the ledger's
    lock (a ``LockNotAvailable`` error then, retry later); without it the statement timeout applies.
    """
    wanted = {partition_name(m): m for m in months}
    if not wanted:
        return []
    existing = set(await _partition_names(session))
    missing = {name: m for name, m in wanted.items() if name not in existing}
    if not missing:
        return []
    await _lock_partition_ddl(session, lock_timeout_ms)
    existing = set(await _partition_names(session))  # another worker may have made some while we waited
    created = []
    for name, month in sorted(missing.items()):
        if name in existing:
            continue
        lower, upper = _bounds(month)
        await session.execute(text(
            f'CREATE TABLE IF NOT EXISTS usage."{name}" PARTITION OF usage.requests '
            f"FOR VALUES FROM ('{lower}') TO ('{upper}')"))
        created.append(name)
    return created


async def _partition_names(session: AsyncSession) -> list[str]:
    rows = await session.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage.requests'::regclass"))
    return list(rows.scalars().all())


_RANGE = re.compile(r"^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$")


async def list_partitions(session: AsyncSession) -> list[LedgerPartition]:
    """Every monthly partition of the ledger with the range PostgreSQL holds for it, oldest first.

    Partitions not named ``requests_YYYYMM`` or without a plain FROM..TO range (a DEFAULT partition, a
    MINVALUE/MAXVALUE bound) were not made here and are left out, so nothing acts on them.
    """
    # pg_get_expr renders the bounds in the session's time zone and date style: pin both for parsing.
    await session.execute(text("SET LOCAL TimeZone = 'UTC'"))
    await session.execute(text("SET LOCAL DateStyle = 'ISO, YMD'"))
    rows = await session.execute(text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'usage.requests'::regclass"))
    out = []
    for name, bound in rows.all():
        m = _RANGE.match(bound or "")
        if not _PARTITION_NAME.match(name) or m is None:
            continue
        try:
            lower, upper = (dt.datetime.fromisoformat(v) for v in m.groups())
        except ValueError:  # a bound datetime cannot hold (year 10000): never old enough to drop
            continue
        out.append(LedgerPartition(name, lower, upper))
    return sorted(out, key=lambda p: p.lower)


async def drop_partition(session: AsyncSession, name: str, *, lock_timeout_ms: int | None = None) -> None:
    """Drop one monthly partition of the ledger and every row in it."""
    if not _PARTITION_NAME.match(name):
        raise ValueError(f"{name!r} is not a ledger partition")
    await _lock_partition_ddl(session, lock_timeout_ms)
    await session.execute(text(f'DROP TABLE IF EXISTS usage."{name}"'))


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


async def stream_all(session: AsyncSession, *, since: dt.datetime | None, org_id: uuid.UUID | None,
                     batch: int = 2000) -> AsyncIterator[RequestRecord]:
    """Every row (of one org, from ``since`` on), oldest first, in keyset-paginated batches."""
    after: tuple[dt.datetime, uuid.UUID] | None = None
    while True:
        stmt = select(RequestRecord)
        if since is not None:
            stmt = stmt.where(RequestRecord.occurred_at >= since)
        if org_id is not None:
            stmt = stmt.where(RequestRecord.org_id == org_id)
        if after is not None:
            stmt = stmt.where(tuple_(RequestRecord.occurred_at, RequestRecord.event_id) > tuple_(*after))
        rows = (await session.scalars(stmt.order_by(RequestRecord.occurred_at, RequestRecord.event_id)
                                      .limit(batch))).all()
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
