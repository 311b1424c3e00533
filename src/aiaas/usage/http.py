"""HTTP routes of the ``usage`` context (mounted on the management API): the ledger and org policies."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated
from uuid import UUID

from litestar import Controller, get, put
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel.errors import BadRequest, NotFound
from aiaas.kernel.security import Permission, Principal
from aiaas.usage import api as usage_api
from aiaas.usage import service
from aiaas.usage.schemas import UsageFilter, UsagePage, UsagePolicy, UsagePolicyUpdate

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


def _scope_org(principal: Principal, org_id: str | None) -> str:
    """The org a usage query reads: an API key's own org; for a session, ``?org_id=`` (required).

    Another tenant's org answers 404, never 403, so org ids cannot be probed.
    """
    if principal.kind == "api_key":
        if org_id is not None and org_id != principal.org_id:
            raise NotFound("No such organization")
        if principal.org_id is None:  # pragma: no cover - an API key always belongs to an org
            raise NotFound("No such organization")
        return principal.org_id
    if org_id is None:
        raise BadRequest("org_id is required for a session: pass ?org_id=", param="org_id")
    _check_org(principal, org_id)
    return org_id


def _check_org(principal: Principal, org_id: str) -> None:
    """The principal must act in ``org_id``: its own org, a role resolved there, or platform admin."""
    if principal.platform_admin:
        return
    if principal.org_id is not None and principal.org_id == org_id:
        return
    if principal.kind == "session" and principal.org_id is None and principal.org_role is not None:
        return  # the RBAC guard resolved the session's role in this route's org
    raise NotFound("No such organization")


_Time = Annotated[dt.datetime | None, Parameter(description="ISO 8601 instant with a timezone")]


class UsageController(Controller):
    """The usage ledger: one row per inference request."""

    path = "/v1/usage"
    tags = ["usage"]

    @get("/requests", opt={"permission": Permission.USAGE_READ, "org_query": True}, summary="List requests")
    async def list_requests(
        self,
        principal: Principal,
        usage_session: AsyncSession,
        org_id: str | None = None,
        since: _Time = None,
        until: _Time = None,
        model: str | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> UsagePage:
        """An org's requests, newest first, with tokens, latency, TTFB, model, deployment, key, user and
        status. Pass the page's ``next_cursor`` as ``cursor`` for the next page. Filters: ``since``
        (inclusive) and ``until`` (exclusive) on the time the request finished, ``model``, ``key_id``,
        ``user_id``, ``status`` (``ok``, ``error``, ``cancelled``)."""
        flt = _filter(principal, org_id, since, until, model, key_id, user_id, status)
        return await service.list_usage(usage_session, flt, cursor=cursor, limit=limit)

    @get("/requests.csv", opt={"permission": Permission.USAGE_READ, "org_query": True},
         summary="Export requests as CSV",
         media_type="text/csv")
    async def export_requests(
        self,
        principal: Principal,
        usage_sessions: SessionFactory,
        org_id: str | None = None,
        since: _Time = None,
        until: _Time = None,
        model: str | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
        status: str | None = None,
    ) -> Stream:
        """The same rows as ``GET /v1/usage/requests`` with the same filters, all of them, as CSV
        (streamed, newest first)."""
        flt = _filter(principal, org_id, since, until, model, key_id, user_id, status)
        service.validate_filter(flt)

        async def rows() -> AsyncIterator[str]:
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(service.CSV_COLUMNS)
            async with usage_sessions() as session:
                n = 0
                async for rec in service.export_usage(session, flt):
                    writer.writerow(service.csv_row(rec))
                    n += 1
                    if n % 500 == 0:
                        yield buf.getvalue()
                        buf.seek(0)
                        buf.truncate()
            yield buf.getvalue()

        return Stream(rows(), media_type="text/csv",
                      headers={"content-disposition": 'attachment; filename="usage-requests.csv"'})


def _filter(principal: Principal, org_id: str | None, since: dt.datetime | None, until: dt.datetime | None,
            model: str | None, key_id: str | None, user_id: str | None, status: str | None) -> UsageFilter:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} needs a timezone, e.g. 2026-11-01T00:00:00Z", param=name)
    return UsageFilter(org_id=_scope_org(principal, org_id), since=since, until=until, model=model,
                       key_id=key_id, user_id=user_id, status=status)


class UsagePolicyController(Controller):
    """An organization's rate limits, monthly token budget and Redis-outage behaviour."""

    path = "/v1/orgs/{org_id:uuid}/usage-policy"
    tags = ["usage"]

    @get("/", opt={"permission": Permission.USAGE_READ}, summary="Get the usage policy")
    async def get_policy(self, org_id: UUID, principal: Principal, usage_session: AsyncSession) -> UsagePolicy:
        """The org's policy; an org without one has no limits and fails closed."""
        oid = str(org_id)
        _check_org(principal, oid)
        return await service.get_policy(usage_session, oid)

    @put("/", opt={"permission": Permission.ORG_MANAGE}, summary="Set the usage policy")
    async def put_policy(
        self, org_id: UUID, data: UsagePolicyUpdate, principal: Principal, usage_session: AsyncSession,
        usage_policies: usage_api.PolicyStore,
    ) -> UsagePolicy:
        """Replace the org's policy: ``rpm_limit`` and ``tpm_limit`` (per org, per minute), the
        ``monthly_token_budget``, the tokens reserved when a request sets no ``max_tokens``, and
        ``redis_failure_mode`` (``closed``: 503 while Redis is down; ``open``: serve and count later).
        Omitted limits mean unlimited. Streamers apply it within seconds."""
        oid = str(org_id)
        _check_org(principal, oid)
        policy = await service.put_policy(usage_session, oid, data)
        await usage_policies.store(policy)
        return policy


ROUTES = [UsageController, UsagePolicyController]
