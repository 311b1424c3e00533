"""The management API app (role ``api``): mounts each context's HTTP router."""

from __future__ import annotations

from litestar import Litestar

from aiaas.entrypoints.bootstrap import Container, dependencies
from aiaas.kernel.web import make_app

DESCRIPTION = (
    "Management API of aiaas: users, organizations, memberships, API keys, usage and analytics. "
    "Every error is an RFC 7807 problem document (application/problem+json)."
)


def create_app(container: Container) -> Litestar:
    """Build the management API for ``container``'s dependencies."""
    return make_app(
        role="api",
        settings=container.settings,
        route_handlers=[],
        checks=container.checks("api"),
        title="aiaas management API",
        description=DESCRIPTION,
        dependencies=dependencies(container),
        on_startup=[container.start],
        on_shutdown=[container.stop],
        state={"container": container},
    )
