"""Authentication and the RBAC guard, shared by every HTTP role.

One Litestar guard runs before every route handler of an app built with an authenticator:

1. a route with ``opt={"public": True}`` passes untouched;
2. a route without ``opt["permission"]`` is refused (fail closed; a test walks the route tables too);
3. the ``Authorization: Bearer`` token (API key or session token) is resolved to a :class:`Principal`
   by the app's :class:`Authenticator` (401 when missing, malformed, unknown, expired or revoked);
4. a route with ``{org_id}`` in its path (or, with ``opt={"org_query": True}``, an ``org_id`` query
   parameter) is scoped to that org: an API key must belong to it and a session user must be a member
   (or a platform admin); otherwise 404, never 403, so ids of other tenants cannot be probed. A session
   calling an ``org_query`` route without ``org_id`` gets 400 (an API key is scoped by its own org),
   except a platform admin on a route with ``opt={"all_orgs_for_admins": True}`` (reports across orgs);
5. the principal must hold the route's permission (and, for an API key, the matching scope), else 403.

The resolved principal is kept on the request's state and handed to handlers by the ``principal``
dependency.
"""

from __future__ import annotations

from typing import Any, Protocol

from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler

from aiaas.kernel.errors import BadRequest, Forbidden, NotFound, Unauthenticated
from aiaas.kernel.security import Permission, Principal, bearer_token, token_kind

AUTHENTICATOR_STATE = "authenticator"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aiaas"'}


class Authenticator(Protocol):
    """Resolves bearer tokens to principals (implemented by the composition root)."""

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a well-formed token, or None when it is unknown, expired or revoked."""
        ...

    async def for_org(self, principal: Principal, org_id: str) -> Principal | None:
        """``principal`` acting in ``org_id`` (its role there filled in), or None when it may not see it."""
        ...


def _automatic_options(handler: Any) -> bool:
    # Litestar adds an OPTIONS handler to every path; it only lists the allowed methods.
    return getattr(handler, "http_methods", None) == {"OPTIONS"} and not handler.opt.get("permission")


def api_key_required() -> Forbidden:
    """The 403 of a session on a route that serves API keys only (the streamer's: a session names no org)."""
    return Forbidden("The inference API needs an API key of an organization; a session names no organization "
                     "here.", code="api_key_required")


def unauthenticated(detail: str) -> Unauthenticated:
    """The 401 every authentication failure answers (OpenAI's ``invalid_api_key`` code included)."""
    return Unauthenticated(detail, code="invalid_api_key", headers=_CHALLENGE)


async def rbac_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Authenticate the request and check the route's declared permission (see the module docstring)."""
    opt = handler.opt
    if opt.get("public") or _automatic_options(handler):
        return
    permission = opt.get("permission")
    if not isinstance(permission, Permission):
        # A route that forgot to declare its permission is closed, not open.
        raise Forbidden("This route declares no permission.", code="route_without_permission")
    authenticator: Authenticator = connection.app.state[AUTHENTICATOR_STATE]
    token = bearer_token(connection.headers.get("authorization"))
    if token is None:
        raise unauthenticated("Missing bearer token: send `Authorization: Bearer <API key or session token>`.")
    principal = await authenticator.authenticate(token) if token_kind(token) else None
    if principal is None:
        raise unauthenticated("Invalid, expired or revoked API key or session token.")
    if opt.get("api_key_only") and principal.kind != "api_key":
        raise api_key_required()
    org_id = connection.path_params.get("org_id")
    if org_id is None and opt.get("org_query"):
        org_id = connection.query_params.get("org_id") or principal.org_id
        # A platform admin may read every org at once on routes that say so (cross-org reports).
        if org_id is None and not (opt.get("all_orgs_for_admins") and principal.platform_admin):
            raise BadRequest("Pass the organization as the `org_id` query parameter.", code="org_id_required",
                             param="org_id")
    if org_id is not None:
        scoped = await authenticator.for_org(principal, str(org_id))
        if scoped is None:
            raise NotFound(f"Organization {org_id} not found.", code="org_not_found")
        principal = scoped
    write = connection.scope["method"] not in SAFE_METHODS
    if not principal.has(permission, write=write):
        raise Forbidden(f"This action needs the {permission.value!r} permission"
                        + (" and a matching API key scope." if principal.kind == "api_key" else "."),
                        code="permission_denied")
    connection.state.principal = principal


def _provide_principal(request: Any) -> Principal:
    principal = request.state.get("principal")
    if principal is None:  # only reachable from a public route that asked for a principal
        raise unauthenticated("This route needs a bearer token.")
    return principal  # type: ignore[no-any-return]


def principal_dependency() -> Provide:
    """The ``principal`` dependency: the caller resolved by :func:`rbac_guard`."""
    from litestar import Request

    def provide(request: Request[Any, Any, Any]) -> Principal:
        return _provide_principal(request)

    return Provide(provide, sync_to_thread=False)


def route_permissions(app: Any) -> list[tuple[str, str, Any]]:
    """Every (method, path, permission-or-"public"-or-None) of an app's route table, for audits and tests."""
    out: list[tuple[str, str, Any]] = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if _automatic_options(handler):
                continue
            methods = sorted(getattr(handler, "http_methods", {"WS"}))
            opt = handler.opt
            marker = "public" if opt.get("public") else opt.get("permission")
            out.extend((m, route.path, marker) for m in methods)
    return out
