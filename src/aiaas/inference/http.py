"""HTTP routes of the ``inference`` context.

``streamer_handlers``: ``/v1/models``, ``/v1/models/{model}`` and the stored Responses API responses
(``/v1/responses/{id}``, its ``input_items``), mounted on the streamer (the inference POST endpoints are
served in front of Litestar by :mod:`aiaas.inference.asgi`).
``CatalogAdminController``: the model catalog and org model-access policies under ``/v1/admin``,
mounted on the management API.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.inference.schemas import (
    CatalogModel,
    DeploymentHealth,
    ModelAccess,
    ModelList,
    ModelObject,
    ModelSpec,
    ModelUpdate,
    OrgModelAccess,
)
from aiaas.inference.service import catalog as catalog_service
from aiaas.inference.service.catalog import CatalogCache
from aiaas.inference.service.gateway import Gateway
from aiaas.inference.service.routing import Breakers
from aiaas.inference.service.stored_responses import ResponseStore
from aiaas.kernel.errors import Forbidden, NotFound
from aiaas.kernel.security import Permission, Principal

INVOKE = {"permission": Permission.MODELS_INVOKE, "api_key_only": True}
ADMIN = {"permission": Permission.PLATFORM_ADMIN}
_CTX = "aiaas.inference.call"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

SessionScope = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# Dependencies by name: ``principal`` comes from authentication, the rest from the composition root.
PrincipalDep = NamedDependency[Principal]
GatewayDep = NamedDependency[Gateway]
UowDep = NamedDependency[SessionScope]
CatalogDep = NamedDependency[CatalogCache]
ResponsesDep = NamedDependency[ResponseStore]
BreakersDep = NamedDependency[Breakers]
ModelPath = FromPath[str]


def _require(principal: Principal, permission: Permission) -> None:
    # The RBAC guard checks the route's permission too; this keeps the routes safe on their own.
    if not principal.has(permission):
        raise Forbidden(f"This action needs the {permission.value} permission.", code="permission_denied")


def _visible(models: list[CatalogModel], org_models: list[str] | None, principal: Principal) -> list[ModelObject]:
    allowed = set(org_models) if org_models is not None else None
    return [ModelObject(id=m.name, created=m.created, owned_by=m.owned_by) for m in models
            if (allowed is None or m.name in allowed) and principal.may_use_model(m.name)]


@get("/v1/models", opt=INVOKE, tags=["inference"], summary="List models", operation_id="listModels")
async def list_models(principal: PrincipalDep, gateway: GatewayDep) -> ModelList:
    """The models this API key (and its organization's policy) may use."""
    _require(principal, Permission.MODELS_INVOKE)
    models = await gateway.catalog.all_models()
    org_models = await gateway.catalog.org_models(principal.org_id)
    return ModelList(data=_visible(models, org_models, principal))


@get("/v1/models/{model:path}", opt=INVOKE, tags=["inference"], summary="Retrieve a model",
     operation_id="retrieveModel")
async def retrieve_model(model: ModelPath, principal: PrincipalDep, gateway: GatewayDep) -> ModelObject:
    """One model, if this API key may use it (404 otherwise, as OpenAI answers)."""
    _require(principal, Permission.MODELS_INVOKE)
    name = model.lstrip("/")
    models = await gateway.catalog.all_models()
    org_models = await gateway.catalog.org_models(principal.org_id)
    for m in _visible([m for m in models if m.name == name], org_models, principal):
        return m
    raise NotFound(f"The model `{name}` does not exist or you do not have access to it.", code="model_not_found",
                   param="model")


@get("/v1/responses/{response_id:str}", opt=INVOKE, tags=["inference"], summary="Retrieve a response",
     operation_id="getResponse")
async def get_response(response_id: ModelPath, principal: PrincipalDep, responses: ResponsesDep) -> dict[str, Any]:
    """A stored response (``store: true``) of this API key's organization, as it was returned; 404 for
    another org's, a deleted or an expired one."""
    _require(principal, Permission.MODELS_INVOKE)
    return await responses.get(org_id=principal.org_id or "", response_id=response_id)


@delete("/v1/responses/{response_id:str}", opt=INVOKE, tags=["inference"], summary="Delete a response",
        operation_id="deleteResponse", status_code=200)
async def delete_response(response_id: ModelPath, principal: PrincipalDep, responses: ResponsesDep) -> dict[str, Any]:
    """Delete a stored response: it can no longer be retrieved or continued with ``previous_response_id``."""
    _require(principal, Permission.MODELS_INVOKE)
    return await responses.delete(org_id=principal.org_id or "", response_id=response_id)


@get("/v1/responses/{response_id:str}/input_items", opt=INVOKE, tags=["inference"],
     summary="List a response's input items", operation_id="listInputItems")
async def list_input_items(
    response_id: ModelPath, principal: PrincipalDep, responses: ResponsesDep,
    limit: Annotated[int, Parameter(ge=1, le=100, description="Items per page")] = 20,
    order: Annotated[Literal["asc", "desc"], Parameter(description="`desc`: newest first")] = "desc",
    after: Annotated[str | None, Parameter(description="The id of the last item already seen")] = None,
) -> dict[str, Any]:
    """The input items of a stored response (its own request's, not the earlier turns'), a page at a time."""
    _require(principal, Permission.MODELS_INVOKE)
    return await responses.input_items(org_id=principal.org_id or "", response_id=response_id, limit=limit,
                                       order=order, after=after)


streamer_handlers = [list_models, retrieve_model, get_response, delete_response, list_input_items]


class CatalogAdminController(Controller):
    """The model catalog and org model-access policies (platform admins only).

    Changes take effect on every streamer at once: each write commits, then rewrites the Redis cache.
    """

    path = "/v1/admin"
    tags = ["catalog"]
    opt = ADMIN

    @get("/models", summary="List catalog models")
    async def list_catalog(self, principal: PrincipalDep, inference_uow: UowDep) -> list[CatalogModel]:
        """Every model with its deployments."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            return await catalog_service.list_models(session=session)

    @get("/deployments", summary="Deployments and their circuit breakers")
    async def deployment_health(self, principal: PrincipalDep, inference_uow: UowDep,
                                breakers: BreakersDep) -> list[DeploymentHealth]:
        """Every deployment of every model with its circuit breaker as the streamers see it: `closed` (in
        rotation), `open` (left out until `open_until` after `consecutive_failures` failures), `half_open`
        (one probe request at a time), or `unknown` while Redis cannot be read."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            return await catalog_service.deployment_health(session=session, breakers=breakers)

    @post("/models", summary="Add a model")
    async def create(self, data: JSONBody[ModelSpec], principal: PrincipalDep, inference_uow: UowDep,
                     catalog: CatalogDep) -> CatalogModel:
        """Add a public model name served by one or more deployments."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            created = await catalog_service.create_model(session=session, spec=data)
        await catalog.refresh_models([created.name])
        return created

    @get("/models/{name:path}", summary="Get a model")
    async def get_one(self, name: ModelPath, principal: PrincipalDep, inference_uow: UowDep) -> CatalogModel:
        """One model with its deployments."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            return await catalog_service.get_model(session=session, name=name.lstrip("/"))

    @put("/models/{name:path}", summary="Replace a model")
    async def replace(self, name: ModelPath, data: JSONBody[ModelUpdate], principal: PrincipalDep,
                      inference_uow: UowDep,
                      catalog: CatalogDep) -> CatalogModel:
        """Replace a model's settings and deployments (a deployment keeps its id while its name is unchanged)."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            updated = await catalog_service.replace_model(session=session, name=name.lstrip("/"), update=data)
        await catalog.refresh_models([updated.name])
        return updated

    @delete("/models/{name:path}", summary="Delete a model")
    async def remove(self, name: ModelPath, principal: PrincipalDep, inference_uow: UowDep,
                     catalog: CatalogDep) -> None:
        """Remove a model and its deployments."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            await catalog_service.delete_model(session=session, name=name.lstrip("/"))
        await catalog.refresh_models([name.lstrip("/")])

    @get("/model-access", summary="List org model-access policies")
    async def list_policies(self, principal: PrincipalDep, inference_uow: UowDep) -> list[OrgModelAccess]:
        """Every organization that is restricted to a list of models."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            return await catalog_service.list_access(session=session)

    @get("/model-access/{org_id:str}", summary="Get an org's model access")
    async def get_policy(self, org_id: ModelPath, principal: PrincipalDep, inference_uow: UowDep) -> OrgModelAccess:
        """Which models an organization may use (``models`` null: all of them)."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            return await catalog_service.get_access(session=session, org_id=org_id)

    @put("/model-access/{org_id:str}", summary="Set an org's model access")
    async def put_policy(self, org_id: ModelPath, data: JSONBody[ModelAccess], principal: PrincipalDep,
                         inference_uow: UowDep,
                         catalog: CatalogDep) -> OrgModelAccess:
        """Restrict an organization to a list of models (null lifts the restriction)."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            policy = await catalog_service.put_access(session=session, org_id=org_id, access=data)
        await catalog.refresh_access([policy.org_id])
        return policy

    @delete("/model-access/{org_id:str}", summary="Remove an org's model-access policy")
    async def delete_policy(self, org_id: ModelPath, principal: PrincipalDep, inference_uow: UowDep,
                            catalog: CatalogDep) -> None:
        """Let the organization use every model again."""
        _require(principal, Permission.PLATFORM_ADMIN)
        async with inference_uow() as session:
            await catalog_service.delete_access(session=session, org_id=org_id)
        await catalog.refresh_access([org_id])
