"""The three inference POST endpoints as a plain ASGI app in front of Litestar (the streamer's hot path).

``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` carry almost all of the streamer's
traffic, and the gateway must add well under a millisecond to them. Litestar's per-request machinery
(routing, connection objects, the kwargs model, dependency injection, the guard, response objects and
a task group per streamed response) cost about as much as the rest of the gateway put together, so
these three paths are served here with the same contract and every other path (``/v1/models``,
health, metrics, OpenAPI) falls through to the Litestar app:

- authentication and RBAC as the kernel's guard does them: the bearer token resolved by the app's
  ``Authenticator`` (401 with ``WWW-Authenticate``), then :data:`PERMISSION` (with the API key's scope)
  checked, else 403;
- the body read once, bounded by ``AIAAS_MAX_REQUEST_BODY_BYTES`` (413), decoded by ``requests.parse``;
- every error an RFC 7807 problem document carrying OpenAI's ``error`` object;
- streams written straight to the ASGI ``send``; one small task watches for the client leaving and
  cancels the relay, so the upstream request is closed at once;
- accounting (``Gateway.finish``: metrics, the GenAI span, the completion event) runs after the last
  byte was sent, never before.

The outer :class:`~aiaas.kernel.http.RequestContext` still adds the request id, the server span, the
HTTP metrics and the access log; ``scope["path_template"]`` is set here for its route label.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiaas.inference.service.gateway import CallContext, Gateway
from aiaas.inference.service.requests import Parsed, parse
from aiaas.kernel.errors import (
    PROBLEM_JSON,
    UNHANDLED_DETAIL,
    AppError,
    BodyTooLarge,
    Forbidden,
    MethodNotAllowed,
    ServiceUnavailable,
    encode_problem,
    problem_for,
    problem_of,
)
from aiaas.kernel.guard import Authenticator, unauthenticated
from aiaas.kernel.security import Permission, Principal, bearer_token, token_kind

log = logging.getLogger("aiaas.inference")

PERMISSION = Permission.MODELS_INVOKE
Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint served here, and how the contract describes it."""

    endpoint: str
    operation_id: str
    summary: str
    description: str


ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route(
        "chat.completions", "createChatCompletion", "Create a chat completion",
        "OpenAI's chat completions; `stream: true` answers Server-Sent Events ending in `data: [DONE]`."),
    "/v1/completions": Route(
        "completions", "createCompletion", "Create a (legacy) completion",
        "OpenAI's legacy text completions, streamed or not."),
    "/v1/embeddings": Route("embeddings", "createEmbedding", "Create embeddings", "OpenAI's embeddings."),
}

_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_PROBLEM = (b"content-type", PROBLEM_JSON.encode())
_STREAMING = "aiaas.inference.streaming"


def route_permissions() -> list[tuple[str, str, Permission]]:
    """(method, path, permission) of every route served here, for the route-table audit."""
    return [("POST", path, PERMISSION) for path in ROUTES]


def _headers(pairs: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs.items()]


async def _read_body(scope: Scope, receive: Callable[[], Any], limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = 0
            if declared > limit:
                raise BodyTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
            break
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise BodyTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")
        parts.append(chunk)
    return b"".join(parts)


async def _until_disconnect(receive: Callable[[], Any]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class InferenceEdge:
    """ASGI app: serves :data:`ROUTES` itself and hands every other request to ``app`` (Litestar)."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, gateway: Callable[[], Gateway | None],
                 max_body_bytes: int) -> None:
        self.app = app
        self._authenticator = authenticator
        self._gateway = gateway
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["path_template"] = scope["path"]
        state = scope.setdefault("state", {})
        ctx: CallContext | None = None
        gateway: Gateway | None = None
        limits: dict[str, str] = {}
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}",
                                       headers={"Allow": "POST"})
            # A missing or malformed token is refused before the body is read; a well-formed one is resolved
            # below, together with the model's catalog entry.
            token = _token(scope)
            gateway = self._gateway()
            if gateway is None:
                raise ServiceUnavailable("The inference gateway is starting.", code="starting",
                                         headers={"Retry-After": "1"})
            body = await _read_body(scope, receive, self._max_body)
            # Decoded before authentication so the model's catalog keys can be read in the principal's
            # MGET; a decoding error is still only reported once the caller is authenticated.
            parsed: Parsed | None = None
            invalid: AppError | None = None
            try:
                parsed = parse(route.endpoint, body)
            except AppError as exc:
                invalid = exc
            principal, prefetched = await self._authenticate(
                token, gateway.prefetch_keys(parsed.model) if parsed is not None else ())
            ctx = CallContext(request_id=state.get("request_id", ""), endpoint=route.endpoint,
                              principal=principal)
            if parsed is None:
                raise invalid  # type: ignore[misc]
            prepared = await gateway.prepare(principal=principal, parsed=parsed, ctx=ctx, prefetched=prefetched)
            limits = prepared.headers
            if parsed.stream:
                stream = await gateway.open_stream(prepared, ctx)
                state[_STREAMING] = True
                await self._stream(send, receive, gateway.relay(stream, ctx, parsed.wants_usage),
                                   [*_SSE, *_headers(limits), _processing_ms(ctx)])
                return
            reply = await gateway.complete(prepared, ctx)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", reply.content_type.encode("latin-1")),
                (b"content-length", str(len(reply.body)).encode()), *_headers(limits), _processing_ms(ctx)]})
            await send({"type": "http.response.body", "body": reply.body})
        except AppError as exc:
            if ctx is not None:
                ctx.failed(exc)
            if state.get(_STREAMING):  # the relay reports upstream failures in-band; nothing to add now
                raise
            # An admitted request that then failed upstream still reports the limits it was charged to.
            headers = {**limits, **exc.headers} if limits else exc.headers
            problem = problem_of(exc, instance=scope["path"], request_id=state.get("request_id"), openai=True)
            await _send_problem(send, exc.status, encode_problem(problem), headers)
        except Exception as exc:
            if ctx is not None:
                ctx.failed(exc)
            if state.get(_STREAMING):
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            problem = problem_for(status=500, detail=UNHANDLED_DETAIL, instance=scope["path"],
                                  request_id=state.get("request_id"), openai=True)
            await _send_problem(send, 500, encode_problem(problem), {})
        except BaseException as exc:  # cancelled: the client went away before the response started
            if ctx is not None:
                ctx.failed(exc)
                ctx.status = "cancelled"
                ctx.error_type = "client_disconnected"
            raise
        finally:
            if ctx is not None and gateway is not None:
                gateway.finish(ctx)

    async def _authenticate(self, token: str, keys: Sequence[str]) -> tuple[Principal, list[bytes | None] | None]:
        principal, values = await self._authenticator.authenticate_reading(token, keys)
        if principal is None:
            raise unauthenticated("Invalid, expired or revoked API key or session token.")
        if not principal.has(PERMISSION, write=True):
            raise Forbidden(f"This action needs the {PERMISSION.value!r} permission"
                            + (" and a matching API key scope." if principal.kind == "api_key" else "."),
                            code="permission_denied")
        return principal, values

    @staticmethod
    async def _stream(send: Callable[[Any], Any], receive: Callable[[], Any], events: AsyncIterator[bytes],
                      headers: list[tuple[bytes, bytes]]) -> None:
        """Write the SSE body as the relay yields it; a client that leaves cancels the relay."""
        task = asyncio.current_task()
        assert task is not None
        state = {"done": False, "gone": False}

        def client_left(watcher: asyncio.Task[None]) -> None:
            if not state["done"] and not watcher.cancelled() and watcher.exception() is None:
                state["gone"] = True
                task.cancel()

        await send({"type": "http.response.start", "status": 200, "headers": headers})
        watcher = asyncio.get_running_loop().create_task(_until_disconnect(receive))
        watcher.add_done_callback(client_left)
        try:
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state["done"] = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not state["gone"]:
                raise
            task.uncancel()  # our own cancellation: the client left, which the relay has accounted
        finally:
            state["done"] = True
            watcher.cancel()
            await events.aclose()  # type: ignore[attr-defined]


def _token(scope: Scope) -> str:
    """The bearer token of the request; 401 when it is missing or cannot be one of ours."""
    header = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    token = bearer_token(header)
    if token is None:
        raise unauthenticated("Missing bearer token: send `Authorization: Bearer <API key or session token>`.")
    if not token_kind(token):
        raise unauthenticated("Invalid, expired or revoked API key or session token.")
    return token


def _processing_ms(ctx: CallContext) -> tuple[bytes, bytes]:
    return b"openai-processing-ms", str(int((time.perf_counter() - ctx.started) * 1000)).encode()


async def _send_problem(send: Callable[[Any], Any], status: int, body: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        _PROBLEM, (b"content-length", str(len(body)).encode()), *_headers(headers)]})
    await send({"type": "http.response.body", "body": body})
