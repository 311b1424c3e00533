"""The Litestar app factory shared by the HTTP roles: problem+json errors, the body-size limit, the
OpenAPI description and the observability routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from litestar import Litestar, Request, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import BadRequest, ValidationFailed, problem_handlers
from aiaas.kernel.health import Check, observability_handlers
from aiaas.kernel.text import contains_nul

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


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def nul_guard(*, openai: bool) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A ``before_request`` hook refusing a request with a NUL character anywhere (see :mod:`kernel.text`)."""
    error = BadRequest if openai else ValidationFailed

    async def refuse_nul(request: Request[Any, Any, Any]) -> None:
        scope = request.scope
        body = await request.body() if request.method in _BODY_METHODS else b""
        if contains_nul(path=scope["path"], raw_path=scope.get("raw_path") or b"",
                        query=scope.get("query_string") or b"", body=body):
            raise error("The request contains a NUL character; no field accepts one.", code="invalid_characters")

    return refuse_nul


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
                                    extra_state=extra_ready_state, degradable=degradable_checks,
                                    metrics_token=settings.metrics_token,
                                    metrics_open=settings.env != "production"),
            *route_handlers,
        ],
        exception_handlers=problem_handlers(openai=openai_errors),
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=openapi_config(title, description),
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        dependencies=deps,
        guards=guards,
        before_request=nul_guard(openai=openai_errors),
        middleware=list(middleware),
        state=State(app_state),
        logging_config=None,
        debug=False,
    )
