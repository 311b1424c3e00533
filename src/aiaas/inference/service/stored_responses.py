"""Stored Responses API responses: kept per org in ``inference.stored_responses`` for their retention.

``store: true`` (the default, as at OpenAI) keeps a response so ``GET /v1/responses/{id}`` returns it and a
later request's ``previous_response_id`` continues its conversation on any backend: the conversation is
rebuilt from the stored input and output items of every response in the chain, since chat backends keep no
state of their own. A response is written before the client gets its last byte (the final event of a
stream, or the whole body), so a client that has the response can always continue from it.
Every read is scoped to the caller's org: another org's response is simply not found (404).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference import repository
from aiaas.inference.models import StoredResponseRow
from aiaas.kernel.errors import BadRequest, NotFound
from aiaas.kernel.events import utcnow

UnitOfWork = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# Response and item ids are ours ("resp_" + hex); anything else cannot be one and is not looked up.
_MAX_ID = 64


def _org(org_id: str) -> uuid.UUID:
    return uuid.UUID(org_id)


def _not_found(response_id: str, *, param: str | None = None) -> NotFound:
    return NotFound(f"No response with id '{response_id}' was found.", code="response_not_found", param=param)


def _checked(response_id: str, *, param: str | None = None) -> str:
    if not response_id or len(response_id) > _MAX_ID or not response_id.isprintable():
        raise _not_found(response_id[:_MAX_ID], param=param)
    return response_id


class ResponseStore:
    """The streamer's access to stored responses (one unit of work per call)."""

    def __init__(self, unit_of_work: UnitOfWork, *, retention_days: int) -> None:
        self._uow = unit_of_work
        self.retention = dt.timedelta(days=retention_days)

    async def history(self, *, org_id: str, response_id: str) -> list[dict[str, Any]]:
        """The conversation up to and including ``response_id``: every input and output item, oldest first.
        404 (naming ``previous_response_id``) when it is not the org's, was deleted or has expired."""
        rid = _checked(response_id, param="previous_response_id")
        async with self._uow() as session:
            chain = await repository.response_chain(session, _org(org_id), rid, utcnow())
        if not chain:
            raise NotFound(f"Previous response with id '{rid}' not found.", code="previous_response_not_found",
                           param="previous_response_id")
        items: list[dict[str, Any]] = []
        for inputs, outputs in chain:
            items.extend(inputs)
            items.extend(outputs)
        return items

    async def save(self, *, org_id: str, key_id: str | None, response: dict[str, Any],
                   input_items: list[dict[str, Any]], previous_response_id: str | None = None) -> None:
        """Keep a finished response (and its request's input items) for the retention period; it continues
        ``previous_response_id`` (the request's: a passed-through answer's own field never names ours)."""
        now = utcnow()
        previous = previous_response_id or response.get("previous_response_id")
        if previous:
            response = {**response, "previous_response_id": previous}
        row = StoredResponseRow(id=response["id"], org_id=_org(org_id), key_id=uuid.UUID(key_id) if key_id else None,
                                previous_response_id=previous, response=response,
                                input_items=input_items, created_at=now, expires_at=now + self.retention)
        async with self._uow() as session:
            await repository.add_response(session, row)

    async def get(self, *, org_id: str, response_id: str) -> dict[str, Any]:
        """A stored response object as it was returned; 404 when it is not there for this org."""
        rid = _checked(response_id)
        async with self._uow() as session:
            row = await repository.get_response(session, _org(org_id), rid, utcnow())
        if row is None:
            raise _not_found(rid)
        return dict(row.response)

    async def delete(self, *, org_id: str, response_id: str) -> dict[str, Any]:
        """Delete a stored response; OpenAI's deletion object. 404 when it is not there for this org."""
        rid = _checked(response_id)
        async with self._uow() as session:
            gone = await repository.delete_response(session, _org(org_id), rid, utcnow())
        if not gone:
            raise _not_found(rid)
        return {"id": rid, "object": "response", "deleted": True}

    async def input_items(self, *, org_id: str, response_id: str, limit: int = 20, order: str = "desc",
                          after: str | None = None) -> dict[str, Any]:
        """One page of a response's input items, as OpenAI lists them (``desc``: newest first)."""
        if not 1 <= limit <= 100:
            raise BadRequest("limit must be between 1 and 100.", param="limit")
        if order not in ("asc", "desc"):
            raise BadRequest("order must be 'asc' or 'desc'.", param="order")
        rid = _checked(response_id)
        async with self._uow() as session:
            row = await repository.get_response(session, _org(org_id), rid, utcnow())
        if row is None:
            raise _not_found(rid)
        return page_of(list(row.input_items), limit=limit, order=order, after=after)


def page_of(items: list[dict[str, Any]], *, limit: int, order: str, after: str | None) -> dict[str, Any]:
    """A cursor page of ``items`` (kept in request order): ``after`` is the id of the last item already seen."""
    ordered = items if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise BadRequest(f"No input item with id '{after[:_MAX_ID]}' in this response.", param="after")
        ordered = ordered[ids.index(after) + 1:]
    data = ordered[:limit]
    return {"object": "list", "data": data, "first_id": data[0].get("id") if data else None,
            "last_id": data[-1].get("id") if data else None, "has_more": len(ordered) > limit}


async def prune_expired(unit_of_work: UnitOfWork, *, batch: int = 5000, max_batches: int = 100) -> int:
    """Delete expired responses in batches (each its own transaction, so no long lock); how many went."""
    total = 0
    for _ in range(max_batches):
        async with unit_of_work() as session:
            n = await repository.prune_responses(session, utcnow(), limit=batch)
        total += n
        if n < batch:
            break
    return total
