"""The Litestar app factory shared by the HTTP roles: problem+json errors, the body-size limit, the
OpenAPI description and the observability routes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import problem_handlers
from aiaas.kernel.health import Check, observability_handlers

API_VERSION = "0.1.0"


def openapi_config(title: str, description: str) -> OpenAPIConfig:
    """OpenAPI 3.1 description with bearer authentication (session token or API key)."""
    return OpenAPIConfig(
        title=title,
        version=API_VERSION,
        description=description,
        path="/openapi",
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http", scheme="bearer",
                    description="An API key (`sk-...`) or a session token from `POST /v1/auth/login`.",
                )
            }
        ),
        security=[{"bearer": []}],
        create_examples=False,
        # The schema routes are public: clients and SDK generators fetch them without a token.
        openapi_router=Router("/openapi", route_handlers=[], include_in_schema=False, opt={"public": True}),
    )


def make_app(
    *,
    role: str,
    settings: Settings,
    route_handlers: Sequence[ControllerRouterHandler],
    checks: Mapping[str, Check],
    title: str,
    description: str,
    openai_errors: bool = False,
    on_startup: Sequence[Callable[..., Any]] = (),
    on_shutdown: Sequence[Callable[..., Any]] = (),
    dependencies: Mapping[str, Any] | None = None,
    middleware: Sequence[Any] = (),
    extra_ready_state: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
    degradable_checks: Sequence[str] = (),
    state: Mapping[str, Any] | None = None,
    authenticator: Any | None = None,
) -> Litestar:
    """A Litestar app for one role, every error rendered as problem+json.

    With an ``authenticator`` (see :mod:`aiaas.kernel.guard`) every route is authenticated and checked
    by the RBAC guard, and handlers can ask for the ``principal`` dependency.
    """
    from litestar.datastructures import State

    from aiaas.kernel.guard import AUTHENTICATOR_STATE, principal_dependency, rbac_guard

    deps = dict(dependencies or {})
    app_state = dict(state or {})
    guards = []
    if authenticator is not None:
        guards.append(rbac_guard)
        deps["principal"] = principal_dependency()
        app_state[AUTHENTICATOR_STATE] = authenticator

    return Litestar(
        route_handlers=[
            *observability_handlers(role=role, checks=checks, timeout=settings.ready_timeout_seconds,
                                    extra_state=extra_ready_state, degradable=degradable_checks),
            *route_handlers,
        ],
        exception_handlers=problem_handlers(openai=openai_errors),
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=openapi_config(title, description),
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        dependencies=deps,
        guards=guards,
        middleware=list(middleware),
        state=State(app_state),
        logging_config=None,
        debug=False,
    )
