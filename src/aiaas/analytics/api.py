"""Public interface of the ``analytics`` context: the only functions other contexts may call.

The worker keeps ``inference``'s copy of the price book (the prices spend limits charge) in step::

    await analytics_api.sync_admission_prices(analytics_uow, inference_uow, catalog)   # periodically

Functions here return frozen Structs, never ORM rows.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics.service import price_book
from aiaas.inference import api as inference_api

__all__ = ["sync_admission_prices"]


async def sync_admission_prices(analytics_uow: Callable[[], AbstractAsyncContextManager[AsyncSession]],
                                inference_uow: Callable[[], AbstractAsyncContextManager[Any]],
                                catalog: inference_api.CatalogCache) -> list[str]:
    """Hand every model's current and future prices to ``inference`` (which drops the ones no longer
    in force); returns the models whose prices changed. A price added through the API is handed over at
    once; this repairs a handover that failed and retires prices that were superseded."""
    async with analytics_uow() as session:
        prices = await price_book.admission_prices(session)
    return await inference_api.set_admission_prices(inference_uow, catalog, prices)
