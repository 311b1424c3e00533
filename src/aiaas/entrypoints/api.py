"""The management API app (role ``api``): mounts each context's HTTP router."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Litestar
from litestar.di import Provide

from aiaas.entrypoints.bootstrap import Container, dependencies
from aiaas.kernel.errors import Unauthenticated
from aiaas.kernel.security import Principal
from aiaas.kernel.web import make_app
from aiaas.usage import http as usage_http

DESCRIPTION = (
    "Management API of aiaas: users, organizations, memberships, API keys, usage and analytics. "
    "Every error is an RFC 7807 problem document (application/problem+json)."
)


def _no_principal() -> Principal:
    # Stands in until authentication provides the real ``principal`` dependency.
    raise Unauthenticated("Authentication is required")


def create_app(container: Container, *, extra_dependencies: Mapping[str, Any] | None = None) -> Litestar:
    """Build the management API for ``container``'s dependencies (``extra_dependencies`` override them)."""
    deps = dependencies(container)
    deps.setdefault("principal", Provide(_no_principal, sync_to_thread=False))
    policies = container.usage_policies
    deps["usage_session"] = Provide(container.session_provider("usage"))
    deps["usage_sessions"] = Provide(lambda: container.session_factory("usage"), sync_to_thread=False)
    deps["usage_policies"] = Provide(lambda: policies, sync_to_thread=False)
    deps.update(extra_dependencies or {})
    return make_app(
        role="api",
        settings=container.settings,
        route_handlers=[*usage_http.ROUTES],
        checks=container.checks("api"),
        title="aiaas management API",
        description=DESCRIPTION,
        dependencies=deps,
        on_startup=[container.start],
        on_shutdown=[container.stop],
        state={"container": container},
    )
