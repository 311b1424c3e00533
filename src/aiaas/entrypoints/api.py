"""The management API app (role ``api``): mounts each context's HTTP router."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.analytics import http as analytics_http
from aiaas.auth import api as auth_api
from aiaas.auth import http as auth_http
from aiaas.entrypoints.bootstrap import Container, dependencies
from aiaas.entrypoints.console import console_router
from aiaas.inference.http import CatalogAdminController
from aiaas.inference.service.catalog import CatalogCache
from aiaas.kernel.security import OrgRole
from aiaas.kernel.web import make_app
from aiaas.orgs import api as orgs_api
from aiaas.orgs import http as orgs_http
from aiaas.usage import http as usage_http

DESCRIPTION = (
    "Management API of aiaas: users, organizations, memberships, API keys, usage and analytics. "
    "Every error is an RFC 7807 problem document (application/problem+json)."
)


def _member_roles(orgs_session: AsyncSession) -> auth_api.RoleLookup:
    """Roles of org members for ``auth`` (which knows keys, not memberships), read in this request's
    ``orgs`` unit of work."""

    async def role(org_id: str, user_id: str) -> OrgRole | None:
        return await orgs_api.role_of(orgs_session, org_id=org_id, user_id=user_id)

    return role


def create_app(container: Container) -> Litestar:
    """Build the management API for ``container``'s dependencies."""

    def _catalog() -> CatalogCache:
        return container.catalog

    def _inference_uow() -> Any:
        return container.inference_session

    policies = container.usage_policies
    deps = dependencies(container)
    deps["catalog"] = Provide(_catalog, sync_to_thread=False)
    deps["inference_uow"] = Provide(_inference_uow, sync_to_thread=False)
    deps["breakers"] = Provide(lambda: container.breakers, sync_to_thread=False)
    deps["auth_session"] = Provide(container.session_provider("auth"))
    deps["orgs_session"] = Provide(container.session_provider("orgs"))
    deps["usage_session"] = Provide(container.session_provider("usage"))
    deps["usage_sessions"] = Provide(lambda: container.session_factory("usage"), sync_to_thread=False)
    deps["usage_policies"] = Provide(lambda: policies, sync_to_thread=False)
    deps["analytics_session"] = Provide(container.session_provider("analytics"))
    deps["member_roles"] = Provide(_member_roles, sync_to_thread=False)
    return make_app(
        role="api",
        settings=container.settings,
        route_handlers=[*auth_http.ROUTERS, *orgs_http.ROUTERS, CatalogAdminController, *usage_http.ROUTES,
                       *analytics_http.ROUTES, console_router()],
        checks=container.checks("api"),
        title="aiaas management API",
        description=DESCRIPTION,
        dependencies=deps,
        authenticator=container.authenticator,
        on_startup=[container.start],
        on_shutdown=[container.stop],
        state={"container": container},
    )
