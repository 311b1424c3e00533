"""HTTP routes of the ``analytics`` context (mounted on the management API): usage, cost, performance,
OpenAI's organization Usage and Costs APIs, and the price book."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.params import Parameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics.schemas import (
    CompletionsPage,
    CostsPage,
    EmbeddingsPage,
    Granularity,
    PerformanceReport,
    Price,
    PriceCreate,
    UsagePage,
)
from aiaas.analytics.service import openai_api, price_book, queries
from aiaas.kernel.db import after_commit
from aiaas.kernel.errors import BadRequest, NotFound, problem_handlers
from aiaas.kernel.events import utcnow
from aiaas.kernel.security import Permission, Principal

READ = {"permission": Permission.USAGE_READ, "org_query": True}
READ_ACROSS = {**READ, "all_orgs_for_admins": True}
_Time = Annotated[dt.datetime, Parameter(description="ISO 8601 instant with a timezone")]
_List = list[str] | None


def _orgs(principal: Principal, org_id: str | None) -> list[uuid.UUID] | None:
    """The orgs a query reads: an API key's own; a session's ``?org_id=``; a platform admin's choice,
    all orgs when it names none. Another tenant's org answers 404 (the guard checked membership)."""
    if principal.kind == "api_key":
        if principal.org_id is None or (org_id is not None and org_id != principal.org_id):
            raise NotFound("No such organization")
        return [uuid.UUID(principal.org_id)]
    if org_id is None:
        if principal.platform_admin:
            return None
        raise BadRequest("org_id is required for a session: pass ?org_id=", param="org_id")
    try:
        return [uuid.UUID(org_id)]
    except ValueError as exc:
        raise NotFound("No such organization") from exc


def _one_org(principal: Principal, org_id: str | None) -> uuid.UUID:
    orgs = _orgs(principal, org_id)
    if not orgs:
        raise BadRequest("org_id is required: these reports cover one organization", param="org_id")
    return orgs[0]


def _filters(**given: _List) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, values in given.items():
        if values:
            column = queries.COLUMN[name]
            out[column] = queries.filter_values(column, values, name)
    return out


def _both(plain: _List, bracketed: _List) -> _List:
    # OpenAI's SDK sends arrays as ``name[]=v``; curl users often send ``name=v``: take either.
    if plain and bracketed:
        return [*plain, *bracketed]
    return plain or bracketed


class AnalyticsController(Controller):
    """Usage, cost and performance from the analytics projections."""

    path = "/v1/analytics"
    tags = ["analytics"]

    @get("/usage", opt=READ_ACROSS, summary="Usage and cost per time bucket")
    async def usage(
        self, principal: Principal, analytics_session: AsyncSession, start: _Time, end: _Time,
        org_id: str | None = None, granularity: Granularity = "day", group_by: _List = None,
        model: _List = None, deployment: _List = None, api_key: _List = None, user: _List = None,
        endpoint: _List = None, status: _List = None, cursor: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
    ) -> UsagePage:
        """Requests, errors, prompt/cached/completion/reasoning tokens and cost (exact USD, as a decimal
        string) per ``granularity`` bucket in ``[start, end)``, grouped by any of ``model``,
        ``deployment``, ``api_key``, ``user``, ``endpoint``, ``status``, ``error_type``; filters take
        the same names (repeat a parameter for several values). Requests whose model had no price are
        counted in ``unpriced_requests`` and ``unpriced_tokens``, never as $0. Platform admins may omit
        ``org_id`` to read every org. Pass ``next_cursor`` as ``cursor`` for the next page."""
        return await queries.usage(
            analytics_session, org_ids=_orgs(principal, org_id), start=start, end=end, granularity=granularity,
            group_by=group_by or [], cursor=cursor, limit=limit,
            filters=_filters(model=model, deployment=deployment, api_key=api_key, user=user, endpoint=endpoint,
                             status=status))

    @get("/performance", opt=READ_ACROSS, summary="Latency, TTFB, errors and throughput")
    async def performance(
        self, principal: Principal, analytics_session: AsyncSession, start: _Time, end: _Time,
        org_id: str | None = None, group_by: _List = None, model: _List = None, deployment: _List = None,
        endpoint: _List = None,
    ) -> PerformanceReport:
        """TTFB and latency p50/p95/p99 (from merged histograms, each within ``relative_error``), error
        rate and completion tokens per second over ``[start, end)``, per ``model`` and ``deployment``
        (the default grouping) or any of the usage groupings."""
        return await queries.performance(
            analytics_session, org_ids=_orgs(principal, org_id), start=start, end=end,
            group_by=group_by or ["model", "deployment"],
            filters=_filters(model=model, deployment=deployment, endpoint=endpoint))




class OrganizationUsageController(Controller):
    """OpenAI's organization Usage and Costs APIs, for tools written against them (an API key of the org
    with ``usage:read``, or a session with ``?org_id=``)."""

    path = "/v1/organization"
    tags = ["analytics"]
    exception_handlers = problem_handlers(openai=True)  # OpenAI's routes: problems carry OpenAI's error

    async def _usage(self, kind: str, principal: Principal, session: AsyncSession, org_id: str | None,
                     start_time: int, end_time: int | None, bucket_width: str, group_by: _List, models: _List,
                     api_key_ids: _List, user_ids: _List, project_ids: _List, limit: int | None,
                     page: str | None) -> Any:
        return await openai_api.usage_page(
            session, kind, org_id=_one_org(principal, org_id), start_time=start_time, end_time=end_time,
            bucket_width=bucket_width, group_by=group_by, models=models, api_key_ids=api_key_ids,
            user_ids=user_ids, project_ids=project_ids, limit=limit, page=page, now=utcnow())

    @get("/usage/completions", opt=READ, summary="Completions usage (OpenAI's shape)")
    async def completions(
        self, principal: Principal, analytics_session: AsyncSession, start_time: int,
        end_time: int | None = None, bucket_width: str = "1d", org_id: str | None = None,
        group_by: _List = None, group_by_b: Annotated[_List, QueryParameter(name="group_by[]")] = None,
        models: _List = None, models_b: Annotated[_List, QueryParameter(name="models[]")] = None,
        api_key_ids: _List = None, api_key_ids_b: Annotated[_List, QueryParameter(name="api_key_ids[]")] = None,
        user_ids: _List = None, user_ids_b: Annotated[_List, QueryParameter(name="user_ids[]")] = None,
        project_ids: _List = None, project_ids_b: Annotated[_List, QueryParameter(name="project_ids[]")] = None,
        batch: bool | None = None, limit: int | None = None, page: str | None = None,
    ) -> CompletionsPage:
        """Chat and text completions per time bucket (``1m``, ``1h``, ``1d``; OpenAI's limits), as
        OpenAI's ``GET /v1/organization/usage/completions`` returns them. ``batch=true`` matches nothing
        (aiaas has no batch API) and so does ``project_ids`` (no projects)."""
        page_ = await self._usage("completions", principal, analytics_session, org_id, start_time, end_time,
                                  bucket_width, _both(group_by, group_by_b), _both(models, models_b),
                                  _both(api_key_ids, api_key_ids_b), _both(user_ids, user_ids_b),
                                  # batch=true asks for batch jobs only; aiaas has none: match nothing
                                  ["-"] if batch else _both(project_ids, project_ids_b), limit, page)
        return page_  # type: ignore[no-any-return]

    @get("/usage/embeddings", opt=READ, summary="Embeddings usage (OpenAI's shape)")
    async def embeddings(
        self, principal: Principal, analytics_session: AsyncSession, start_time: int,
        end_time: int | None = None, bucket_width: str = "1d", org_id: str | None = None,
        group_by: _List = None, group_by_b: Annotated[_List, QueryParameter(name="group_by[]")] = None,
        models: _List = None, models_b: Annotated[_List, QueryParameter(name="models[]")] = None,
        api_key_ids: _List = None, api_key_ids_b: Annotated[_List, QueryParameter(name="api_key_ids[]")] = None,
        user_ids: _List = None, user_ids_b: Annotated[_List, QueryParameter(name="user_ids[]")] = None,
        project_ids: _List = None, project_ids_b: Annotated[_List, QueryParameter(name="project_ids[]")] = None,
        limit: int | None = None, page: str | None = None,
    ) -> EmbeddingsPage:
        """Embeddings per time bucket, as OpenAI's ``GET /v1/organization/usage/embeddings``."""
        page_ = await self._usage("embeddings", principal, analytics_session, org_id, start_time, end_time,
                                  bucket_width, _both(group_by, group_by_b), _both(models, models_b),
                                  _both(api_key_ids, api_key_ids_b), _both(user_ids, user_ids_b),
                                  _both(project_ids, project_ids_b), limit, page)
        return page_  # type: ignore[no-any-return]

    @get("/costs", opt=READ, summary="Costs per day (OpenAI's shape)")
    async def costs(
        self, principal: Principal, analytics_session: AsyncSession, start_time: int,
        end_time: int | None = None, bucket_width: str = "1d", org_id: str | None = None,
        group_by: _List = None, group_by_b: Annotated[_List, QueryParameter(name="group_by[]")] = None,
        api_key_ids: _List = None, api_key_ids_b: Annotated[_List, QueryParameter(name="api_key_ids[]")] = None,
        project_ids: _List = None, project_ids_b: Annotated[_List, QueryParameter(name="project_ids[]")] = None,
        limit: int | None = None, page: str | None = None,
    ) -> CostsPage:
        """Cost in USD per UTC day, as OpenAI's ``GET /v1/organization/costs``: ``group_by`` of
        ``line_item`` (the model), ``api_key_id``, ``project_id``. Unpriced requests add nothing here; see
        ``/v1/analytics/usage`` for how many there are."""
        return await openai_api.costs_page(
            analytics_session, org_id=_one_org(principal, org_id), start_time=start_time, end_time=end_time,
            bucket_width=bucket_width, group_by=_both(group_by, group_by_b),
            api_key_ids=_both(api_key_ids, api_key_ids_b), project_ids=_both(project_ids, project_ids_b),
            limit=limit, page=page, now=utcnow())


class PriceController(Controller):
    """The price book (platform admins): USD per million tokens per model, from a time on."""

    path = "/v1/admin/prices"
    tags = ["analytics"]
    opt = {"permission": Permission.PLATFORM_ADMIN}

    @get("/", summary="List prices")
    async def list_prices(self, analytics_session: AsyncSession, model: str | None = None) -> list[Price]:
        """Every price-book entry (of ``model``), by model and effective time."""
        return await price_book.list_prices(analytics_session, model=model)

    @post("/", summary="Add a price")
    async def add_price(self, data: PriceCreate, analytics_session: AsyncSession, inference_uow: Any,
                        catalog: Any) -> Price:
        """A new entry for ``model`` (all its deployments, or ``deployment``), in force from
        ``effective_from`` (default now). Entries are never changed: a later one supersedes. To re-rate
        requests already counted, run ``aiaas analytics reprice --from DATE``. Spend limits charge with
        the new price from the next request on (from ``effective_from``, when that is later)."""
        price = await price_book.add_price(analytics_session, data)
        prices = await price_book.admission_prices(analytics_session, models=[price.model])

        async def publish() -> None:
            await price_book.publish_admission_prices(inference_uow, catalog, prices)

        after_commit(analytics_session, publish)
        return price


ROUTES = [AnalyticsController, OrganizationUsageController, PriceController]
