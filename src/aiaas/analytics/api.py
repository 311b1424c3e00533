"""Public interface of the ``analytics`` context: the only functions other contexts may call.

The worker keeps ``inference``'s copy of the price book (the prices spend limits charge) in step, and
prunes the processed-event records with the ledger's retention::

    await analytics_api.sync_admission_prices(analytics_uow, inference_uow, catalog)   # periodically
    await analytics_api.prune_processed_events(analytics_uow, retention_days=days)     # daily

Functions here return frozen Structs, never ORM rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics import repository
from aiaas.analytics.service import price_book
from aiaas.inference import api as inference_api
from aiaas.kernel.events import utcnow

__all__ = ["prune_processed_events", "sync_admission_prices"]

PRUNE_BATCH = 10_000


async def sync_admission_prices(analytics_uow: Callable[[], AbstractAsyncContextManager[AsyncSession]],
                                inference_uow: Callable[[], AbstractAsyncContextManager[Any]],
                                catalog: inference_api.CatalogCache) -> list[str]:
    """Hand every model's current and future prices to ``inference`` (which drops the ones no longer
    in force); returns the models whose prices changed. A price added through the API is handed over at
    once; this repairs a handover that failed and retires prices that were superseded."""
    async with analytics_uow() as session:
        prices = await price_book.admission_prices(session)
    return await inference_api.set_admission_prices(inference_uow, catalog, prices)


async def prune_processed_events(analytics_uow: Callable[[], AbstractAsyncContextManager[AsyncSession]], *,
                                 retention_days: int, now: dt.datetime | None = None,
                                 batch: int = PRUNE_BATCH) -> int:
    """Delete the processed-event records older than ``retention_days`` (the ledger's retention), in
    batches of ``batch``, each its own transaction; returns how many. Their buckets keep the totals; an
    event that old can no longer arrive twice (its ledger rows, the only replay source, are gone) and a
    rebuild cannot reach back that far. Rows of the last 40 days are always kept, beyond any redelivery
    or spill replay."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cut = (now or utcnow()) - dt.timedelta(days=max(retention_days, 40))
    total = 0
    while True:
        async with analytics_uow() as session:
            n = await repository.delete_processed_before(session, cut, limit=batch)
        total += n
        if n < batch:
            return total
