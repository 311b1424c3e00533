"""Applying completion events to the projections, incrementally (the worker) or again from the ledger."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics import repository
from aiaas.analytics.service.prices import PriceBook, PriceEntry
from aiaas.analytics.service.projection import (
    MODEL_KEY_COLUMNS,
    Priced,
    additions,
    bucket_rows,
    by_model,
    floor,
    price,
    processed_rows,
)
from aiaas.inference.events import CompletionRecorded

log = logging.getLogger("aiaas.analytics")

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]


async def load_price_book(session: AsyncSession) -> PriceBook:
    """The whole price book (a small table: one row per model and price change)."""
    rows = await repository.list_prices(session)
    return PriceBook(PriceEntry(id=r.id, model=r.model, deployment=r.deployment, input_per_mtok=r.input_per_mtok,
                                cached_input_per_mtok=r.cached_input_per_mtok, output_per_mtok=r.output_per_mtok,
                                effective_from=r.effective_from) for r in rows)


async def apply_events(session: AsyncSession, events: Sequence[CompletionRecorded],
                       book: PriceBook | None = None) -> list[Priced]:
    """Apply events to every projection in the caller's transaction; returns the ones that were new,
    priced. Events already applied (by event id) add nothing, so a redelivered batch is harmless.
    """
    if not events:
        return []
    book = book if book is not None else await load_price_book(session)
    priced = price(events, book)
    new = await repository.mark_processed(session, processed_rows(priced))
    fresh = [p for p in priced if p.event_uuid in new]
    seen = set()
    unique = []
    for p in fresh:  # the same event twice in one batch: once
        if p.event_uuid not in seen:
            seen.add(p.event_uuid)
            unique.append(p)
    if not unique:
        return []
    for granularity, adds in additions(unique).items():
        await repository.add_to_buckets(session, granularity, bucket_rows(adds))
        await repository.add_to_buckets(session, granularity, bucket_rows(by_model(adds), MODEL_KEY_COLUMNS),
                                        by_model=True)
    await repository.note_newest(session, max(p.event.occurred_at for p in unique))
    return unique


async def newest_applied(session: AsyncSession) -> dt.datetime | None:
    """The time of the newest event applied to the projections (None before the first)."""
    return await repository.newest_applied(session)


async def rebuild(unit_of_work: UnitOfWork, events: Callable[[dt.datetime | None], AsyncIterable[CompletionRecorded]],
                  *, since: dt.datetime | None, org_id: str | None = None,
                  chunk: int = 2000) -> tuple[dt.datetime | None, int]:
    """Recompute the projections (of one org, or all) from ``since`` (its UTC day start; None: all
    history) from the events ``events(start)`` yields (the ledger's), with today's price book. Returns
    (start, events applied). Events of other orgs that ``events`` yields are skipped.

    Runs in one transaction that holds the live consumer off (it waits, then finds its events already
    applied or applies them after), so the projections are never seen half rebuilt. Re-running it gives
    the same result: this is also how history is re-rated after a price change.
    """
    start = floor(since, "day") if since is not None else None
    applied = 0
    async with unit_of_work() as session:
        await repository.lock_for_rebuild(session)
        await repository.forget_from(session, start or dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
                                     org_id=uuid.UUID(org_id) if org_id else None)
        book = await load_price_book(session)
        batch: list[CompletionRecorded] = []
        async for ev in events(start):
            if org_id is not None and ev.org_id != org_id:
                continue
            batch.append(ev)
            if len(batch) >= chunk:
                applied += len(await apply_events(session, batch, book))
                batch = []
        applied += len(await apply_events(session, batch, book))
    log.info("analytics rebuilt from %s: %d events", start.isoformat() if start else "the beginning", applied)
    return start, applied
