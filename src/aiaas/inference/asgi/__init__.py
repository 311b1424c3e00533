"""The inference POST endpoints as a plain ASGI app in front of Litestar (the streamer's hot path).

``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` carry almost all of the streamer's
traffic, and the gateway must add well under a millisecond to them. Litestar's per-request machinery
(routing, connection objects, the kwargs model, dependency injection, the guard, response objects and
a task group per streamed response) cost about as much as the rest of the gateway put together, so
these paths are served here with the same contract, and so are the client surfaces translated to chat
(OpenAI's Responses API, Anthropic's Messages API: :mod:`.responses`, :mod:`.messages`). Every other
path (``/v1/models``, stored responses, health, metrics, OpenAPI) falls through to the Litestar app.

Every route here, whichever surface it serves:

- authentication and RBAC as the kernel's guard does them: the bearer token (or on Anthropic's routes
  ``x-api-key``) resolved by the app's ``Authenticator`` (401 with ``WWW-Authenticate``), then
  :data:`PERMISSION` (with the API key's scope) checked, else 403;
- the body read once, bounded by ``AIAAS_MAX_REQUEST_BODY_BYTES`` (413), decoded by the surface's parser;
  an invalid body is reported only once the caller is authenticated;
- every error an RFC 7807 problem document carrying OpenAI's ``error`` object (Anthropic's error shape on
  its routes: :func:`~aiaas.kernel.errors.encode_anthropic_problem`);
- the surface calls the service (``Gateway.route``) once to resolve, admit and open the request on a
  deployment, and sends the reply or writes the stream straight to the ASGI ``send``; whatever happens
  the upstream stream is closed in the same ``finally`` that accounts the request;
- from the moment the body is in, one small task watches for the client leaving and cancels the
  request, whether it waits for its first byte, a whole answer or streams, so the upstream request is
  closed at once and accounted as ``cancelled``;
- accounting (``Gateway.finish``: metrics, the GenAI span, the completion event with the route's
  ``endpoint``) runs after the last byte was sent, never before.

The outer :class:`~aiaas.kernel.http.RequestContext` still adds the request id, the server span, the
HTTP metrics and the access log; ``scope["path_template"]`` is set here for its route label.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiaas.inference.asgi.chat import ChatSurface
from aiaas.inference.asgi.messages import CountTokensSurface, MessagesSurface
from aiaas.inference.asgi.responses import ResponsesSurface
from aiaas.inference.asgi.surface import Exchange, Surface
from aiaas.inference.asgi.transport import ClientWatch, Scope, Sent, read_body, send_problem, token_of
from aiaas.inference.service.calls import Caller, Outcome, Routed
from aiaas.inference.service.gateway import Gateway
from aiaas.inference.service.stored_responses import ResponseStore
from aiaas.kernel.errors import (
    DEPENDENCY_DOWN,
    UNHANDLED_DETAIL,
    AppError,
    Forbidden,
    MethodNotAllowed,
    Problem,
    ServiceUnavailable,
    dependency_down,
    encode_anthropic_problem,
    encode_problem,
    problem_for,
    problem_of,
    store_of,
)
from aiaas.kernel.guard import Authenticator, api_key_required, unauthenticated
from aiaas.kernel.security import Permission, Principal

__all__ = ["PERMISSION", "ROUTES", "InferenceEdge", "Route", "route_permissions"]

log = logging.getLogger("aiaas.inference")

PERMISSION = Permission.MODELS_INVOKE
ASGIApp = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint served here, and how the contract describes it."""

    endpoint: str  # what the completion event and the metrics call it
    operation_id: str
    summary: str
    description: str
    surface: str = "chat"  # "chat" (OpenAI's own shapes, relayed) | "responses" | "messages" | "count_tokens"


ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route(
        "chat.completions", "createChatCompletion", "Create a chat completion",
        "OpenAI's chat completions; `stream: true` answers Server-Sent Events ending in `data: [DONE]`."),
    "/v1/completions": Route(
        "completions", "createCompletion", "Create a (legacy) completion",
        "OpenAI's legacy text completions, streamed or not."),
    "/v1/embeddings": Route("embeddings", "createEmbedding", "Create embeddings", "OpenAI's embeddings."),
    "/v1/responses": Route(
        "responses", "createResponse", "Create a response",
        "OpenAI's Responses API on any chat-capable deployment (translated to a chat completion). "
        "`stream: true` answers OpenAI's Responses event stream; `store` (default true) keeps the response "
        "for `GET /v1/responses/{id}` and `previous_response_id`.", surface="responses"),
    "/v1/messages": Route(
        "messages", "createMessage", "Create a message (Anthropic)",
        "Anthropic's Messages API on any chat-capable deployment (translated to a chat completion); "
        "`stream: true` answers Anthropic's event stream. Authenticates with `x-api-key` or a bearer token; "
        "errors carry Anthropic's error shape.", surface="messages"),
    "/v1/messages/count_tokens": Route(
        "messages.count_tokens", "countMessageTokens", "Count the tokens of a message (Anthropic)",
        "Anthropic's token counting: an estimate of the request's input tokens. Metered as free (no tokens, "
        "no spend) but counted against the request rate limits.", surface="count_tokens"),
}


def route_permissions() -> list[tuple[str, str, Permission]]:
    """(method, path, permission) of every route served here, for the route-table audit."""
    return [("POST", path, PERMISSION) for path in ROUTES]


class InferenceEdge:
    """ASGI app: serves :data:`ROUTES` itself and hands every other request to ``app`` (Litestar)."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, gateway: Callable[[], Gateway | None],
                 max_body_bytes: int, responses: Callable[[], ResponseStore | None] = lambda: None) -> None:
        self.app = app
        self._authenticator = authenticator
        self._gateway = gateway
        self._max_body = max_body_bytes
        self._surfaces: dict[str, Surface] = {
            "chat": ChatSurface(), "responses": ResponsesSurface(responses), "messages": MessagesSurface(),
            "count_tokens": CountTokensSurface()}

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        surface = self._surfaces[route.surface]
        scope["path_template"] = scope["path"]
        state = scope.setdefault("state", {})
        started = time.perf_counter()
        gateway: Gateway | None = None
        caller: Caller | None = None
        request: Any = None
        x: Exchange | None = None
        outcome: Outcome | None = None
        sent = Sent()
        watch = ClientWatch(receive)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}",
                                       headers={"Allow": "POST"})
            # Refused (401) before the body is read when missing or malformed.
            token = token_of(scope, x_api_key=surface.x_api_key)
            gateway = self._gateway()
            if gateway is None:
                raise ServiceUnavailable("The inference gateway is starting.", code="starting",
                                         headers={"Retry-After": "1"})
            body = await read_body(scope, receive, self._max_body)
            invalid: AppError | None = None
            try:
                request = surface.parse(route.endpoint, body)
            except AppError as exc:
                invalid = exc  # reported once the caller is authenticated
            principal = await self._authenticate(token)
            caller = Caller.of(principal, request_id=state.get("request_id", ""), endpoint=route.endpoint,
                               started=started)
            if invalid is not None:
                raise invalid
            x = Exchange(send=send, sent=sent, watch=watch, gateway=gateway, caller=caller, principal=principal,
                         request_headers=scope["headers"])
            async with watch:
                outcome = await surface.serve(x, request)
        except (AppError, *DEPENDENCY_DOWN) as caught:
            # A store that is down (Redis, PostgreSQL) where no caller degraded on it: a 503 to retry.
            exc = caught if isinstance(caught, AppError) else dependency_down(caught)
            if exc is None:  # a database error that is not the database being unreachable: a bug
                outcome = Outcome.failed(caught)
                await self._unhandled(send, sent, scope, state, surface)
            else:
                if exc is not caught:
                    log.warning("%s unavailable on %s %s: %s: %s", store_of(exc), scope["method"], scope["path"],
                                type(caught).__name__, caught)
                routed = x.routed if x is not None else None
                outcome = Outcome.failed(exc, error_type=routed.error_type if routed else None)
                if not sent.started:
                    headers = {**routed.headers, **exc.headers} if routed is not None else dict(exc.headers)
                    if surface.errors == "anthropic" and state.get("request_id"):
                        headers["request-id"] = state["request_id"]  # where Anthropic's SDKs look for it
                    problem = problem_of(exc, instance=scope["path"], request_id=state.get("request_id"),
                                         openai=True)
                    await send_problem(send, exc.status, _encode(surface, problem), headers)
        except asyncio.CancelledError:
            outcome = Outcome.cancelled(http_status=200 if sent.started else 499)
            if not watch.gone:
                raise  # not the client leaving: the server is shutting down
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception as exc:
            outcome = Outcome.failed(exc)
            await self._unhandled(send, sent, scope, state, surface)
        finally:
            routed = x.routed if x is not None else None
            if routed is not None and routed.events is not None:
                await routed.events.aclose()  # every path that opened an upstream stream closes it
            if gateway is not None and caller is not None:
                gateway.finish(routed or _unrouted(caller, request), outcome or Outcome.cancelled())

    @staticmethod
    async def _unhandled(send: Any, sent: Sent, scope: Scope, state: dict[str, Any], surface: Surface) -> None:
        """Log the error being handled and answer 500, unless the response has started."""
        log.exception("unhandled error on %s %s", scope["method"], scope["path"])
        if not sent.started:
            problem = problem_for(status=500, detail=UNHANDLED_DETAIL, instance=scope["path"],
                                  request_id=state.get("request_id"), openai=True)
            await send_problem(send, 500, _encode(surface, problem), {})

    async def _authenticate(self, token: str) -> Principal:
        principal = await self._authenticator.authenticate(token)
        if principal is None:
            raise unauthenticated("Invalid, expired or revoked API key or session token.")
        if principal.kind != "api_key":
            raise api_key_required()
        if not principal.has(PERMISSION, write=True):
            raise Forbidden(f"This action needs the {PERMISSION.value!r} permission"
                            + (" and a matching API key scope." if principal.kind == "api_key" else "."),
                            code="permission_denied")
        return principal


def _encode(surface: Surface, problem: Problem) -> bytes:
    return encode_anthropic_problem(problem) if surface.errors == "anthropic" else encode_problem(problem)


def _unrouted(caller: Caller, request: Any) -> Routed:
    """A request that never reached routing (refused input), for its accounting."""
    return Routed(caller=caller, model=getattr(request, "model", "") or "", known=False,
                  stream=bool(getattr(request, "stream", False)), estimated_prompt=0)
