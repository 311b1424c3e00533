"""Public interface of the ``inference`` context: the only functions other contexts may call.

The price book's owner (``analytics``) keeps the prices that spend limits charge each model with::

    await inference_api.set_admission_prices(uow, catalog, {"gpt-x": [ModelPrice(...), ...]})

Functions here return frozen Structs, never ORM rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiaas.inference.schemas import ModelPrice
from aiaas.inference.service import catalog as catalog_service
from aiaas.inference.service import stored_responses
from aiaas.inference.service.catalog import CatalogCache

__all__ = ["CatalogCache", "ModelPrice", "prune_stored_responses", "set_admission_prices"]


async def set_admission_prices(uow: Callable[[], AbstractAsyncContextManager[Any]], catalog: CatalogCache,
                               prices: Mapping[str, list[ModelPrice]]) -> list[str]:
    """Make ``prices[model]`` the prices spend limits charge each named model with (those in force now
    and later; models not named keep theirs), in one unit of work of ``inference`` (``uow``), then
    rewrite the changed models' cache entries so every streamer reserves with them on its next request.
    Returns the models whose prices changed. Idempotent: the same prices again change nothing."""
    async with uow() as session:
        changed = await catalog_service.set_prices(session=session, prices=prices)
    if changed:
        await catalog.refresh_models(changed)
    return changed


async def prune_stored_responses(uow: Callable[[], AbstractAsyncContextManager[Any]]) -> int:
    """Delete the stored Responses API responses whose retention has passed (the worker runs it every few
    minutes); how many went."""
    return await stored_responses.prune_expired(uow)
