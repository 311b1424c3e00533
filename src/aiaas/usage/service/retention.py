"""The ledger's monthly partitions: made before rows arrive, dropped once wholly past the retention.

The worker calls ``ensure_ledger_partitions`` at start and daily (this month and the next always exist),
and ``drop_expired_partitions`` when ``AIAAS_USAGE_LEDGER_RETENTION_DAYS`` is set. An event whose month
has no partition anyway (one from far in the past or the future) gets its partition from
``ledger.record_completions`` on the spot.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel.db import after_commit
from aiaas.kernel.events import utcnow
from aiaas.usage import repository

log = logging.getLogger("aiaas.usage.retention")

PARTITIONS_DROPPED = Counter("aiaas_usage_ledger_partitions_dropped_total",
                             "Monthly ledger partitions dropped because all their rows were past the retention.")

# Maintenance runs beside live inserts: it waits at most this long for the ledger's lock, then tries again
# at its next run rather than queueing every insert behind a slow reader (a long CSV export, say).
MAINTENANCE_LOCK_TIMEOUT_MS = 5_000


def month_of(at: dt.datetime) -> dt.date:
    """The first day of the UTC calendar month holding ``at`` (a naive time is taken as UTC)."""
    if at.tzinfo is not None:
        at = at.astimezone(dt.UTC)
    return dt.date(at.year, at.month, 1)


def months_of(times: Iterable[dt.datetime]) -> list[dt.date]:
    """The distinct months of ``times``, oldest first."""
    return sorted({month_of(t) for t in times})


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + 1, 1, 1) if month.month == 12 else dt.date(month.year, month.month + 1, 1)


async def ensure_partitions_for(session: AsyncSession, times: Iterable[dt.datetime], *,
                                lock_timeout_ms: int | None = None) -> list[str]:
    """Create the missing ledger partitions of the months of ``times``; returns the names created (they
    are logged once the unit of work commits)."""
    created = await repository.ensure_partitions(session, months_of(times), lock_timeout_ms=lock_timeout_ms)
    if created:
        after_commit(session, lambda: _log_created(created))
    return created


async def ensure_ledger_partitions(session: AsyncSession, *, now: dt.datetime | None = None) -> list[str]:
    """Create this month's and next month's ledger partitions when missing; returns the names created."""
    current = month_of(now or utcnow())
    first_of_next = _next_month(current)
    return await ensure_partitions_for(
        session, [dt.datetime(current.year, current.month, 1, tzinfo=dt.UTC),
                  dt.datetime(first_of_next.year, first_of_next.month, 1, tzinfo=dt.UTC)],
        lock_timeout_ms=MAINTENANCE_LOCK_TIMEOUT_MS)


async def _log_created(names: list[str]) -> None:
    log.info("created ledger partitions %s", ", ".join(names))


async def drop_expired_partitions(
    session: AsyncSession, *, retention_days: int | None, now: dt.datetime | None = None
) -> list[str]:
    """Drop every ledger partition whose whole range ends at or before ``now - retention_days``.

    A partition that may hold a row newer than the cut (the month the cut falls in, and every later one)
    is kept, so no row younger than the retention is ever dropped; rows older than it live on until their
    whole month has passed the cut. ``retention_days`` None keeps everything. Returns the names dropped;
    they are logged and counted once the unit of work commits.
    """
    if retention_days is None:
        return []
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cut = (now or utcnow()) - dt.timedelta(days=retention_days)
    expired = [p for p in await repository.list_partitions(session) if p.upper <= cut]
    for part in expired:
        await repository.drop_partition(session, part.name, lock_timeout_ms=MAINTENANCE_LOCK_TIMEOUT_MS)
    names = [p.name for p in expired]
    if names:
        after_commit(session, lambda: _count_dropped(names, cut))
    return names


async def _count_dropped(names: list[str], cut: dt.datetime) -> None:
    PARTITIONS_DROPPED.inc(len(names))
    log.info("dropped ledger partitions %s: every row older than the retention cut %s",
             ", ".join(names), cut.isoformat())
