"""The OpenAI-compatible inference app (role ``streamer``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.di import Provide

from aiaas.entrypoints.bootstrap import Container, dependencies
from aiaas.inference.http import streamer_handlers
from aiaas.inference.service.gateway import Gateway
from aiaas.kernel.errors import ServiceUnavailable, Unauthenticated
from aiaas.kernel.security import Principal
from aiaas.kernel.web import make_app

DESCRIPTION = (
    "OpenAI-compatible inference endpoints of aiaas. Errors are RFC 7807 problem documents that also "
    "carry OpenAI's `error` object, so OpenAI SDKs raise their usual exception classes."
)


def _no_authentication() -> Principal:
    raise Unauthenticated("No authentication is configured on this server.", code="invalid_api_key")


def with_principal(deps: dict[str, Any], principal_provider: Callable[..., Any] | None) -> dict[str, Any]:
    """Add a ``principal`` dependency unless authentication already provides one.

    A seam for the time before authentication is wired: tests pass a provider returning a fixed
    principal; without one every call is refused with 401.
    """
    if "principal" not in deps:
        provider = principal_provider or _no_authentication
        deps["principal"] = provider if isinstance(provider, Provide) else Provide(provider, sync_to_thread=False)
    return deps


def create_app(container: Container, *, principal_provider: Callable[..., Any] | None = None) -> Litestar:
    """Build the inference app for ``container``'s dependencies."""

    def _gateway() -> Gateway:
        if container.gateway is None:
            raise ServiceUnavailable("The inference gateway is starting.", code="starting")
        return container.gateway

    deps = dependencies(container)
    deps["gateway"] = Provide(_gateway, sync_to_thread=False)
    return make_app(
        role="streamer",
        settings=container.settings,
        route_handlers=streamer_handlers,
        checks=container.checks("streamer"),
        title="aiaas inference API",
        description=DESCRIPTION,
        openai_errors=True,
        dependencies=with_principal(deps, principal_provider),
        on_startup=[container.start],
        on_shutdown=[container.stop],
        state={"container": container},
    )
