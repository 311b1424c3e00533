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
- one call to the service (``Gateway.route``) resolves, admits and opens the request on a deployment;
  the reply is sent, or the stream written straight to the ASGI ``send``, and whatever happens the
  upstream stream is closed in the same ``finally`` that accounts the request;
- from the moment the body is in, one small task watches for the client leaving and cancels the
  request, whether it waits for its first byte, a whole answer or streams, so the upstream request is
  closed at once and accounted as ``cancelled``;
- accounting (``Gateway.finish``: metrics, the GenAI span, the completion event) runs after the last
  byte was sent, never before.

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

from aiaas.inference.service.calls import Caller, Outcome, Routed, Tally
from aiaas.inference.service.gateway import Gateway
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
from aiaas.kernel.guard import Authenticator, api_key_required, unauthenticated
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


class _ClientWatch:
    """Cancels the serving task when the client goes away, from the moment the body is in until the end.

    So a client that leaves before the first byte, while a non-streamed answer is generated or in the
    middle of a stream cancels the upstream request at once (its provider closes the connection), and
    the request is accounted as ``cancelled``.
    """

    def __init__(self, receive: Callable[[], Any]) -> None:
        self._receive = receive
        self.gone = False
        self._closing = False
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if not self._closing and self._task is not None:
            self.gone = True
            self._task.cancel()

    async def __aenter__(self) -> _ClientWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="aiaas-client-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)


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
        started = time.perf_counter()
        gateway: Gateway | None = None
        caller: Caller | None = None
        parsed: Parsed | None = None
        routed: Routed | None = None
        outcome: Outcome | None = None
        sent = _Sent()
        watch = _ClientWatch(receive)
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed(f"Method {scope['method']} is not allowed on {scope['path']}",
                                       headers={"Allow": "POST"})
            token = _token(scope)  # refused (401) before the body is read when missing or malformed
            gateway = self._gateway()
            if gateway is None:
                raise ServiceUnavailable("The inference gateway is starting.", code="starting",
                                         headers={"Retry-After": "1"})
            body = await _read_body(scope, receive, self._max_body)
            invalid: AppError | None = None
            try:
                parsed = parse(route.endpoint, body)
            except AppError as exc:
                invalid = exc  # reported once the caller is authenticated
            principal = await self._authenticate(token)
            caller = Caller.of(principal, request_id=state.get("request_id", ""), endpoint=route.endpoint,
                               started=started)
            if invalid is not None:
                raise invalid
            assert parsed is not None
            async with watch:
                routed = await gateway.route(caller, principal, parsed)
                if routed.error is not None:
                    raise routed.error
                if routed.events is not None:
                    outcome = await self._relay(send, sent, gateway, routed, parsed.wants_usage, watch)
                else:
                    await self._reply(send, sent, routed)
                    outcome = gateway.outcome_of_reply(routed)
        except AppError as exc:
            outcome = Outcome.failed(exc, error_type=routed.error_type if routed else None)
            if not sent.started:
                headers = {**routed.headers, **exc.headers} if routed is not None else exc.headers
                problem = problem_of(exc, instance=scope["path"], request_id=state.get("request_id"), openai=True)
                await _send_problem(send, exc.status, encode_problem(problem), headers)
        except asyncio.CancelledError:
            outcome = Outcome.cancelled(http_status=200 if sent.started else 499)
            if not watch.gone:
                raise  # not the client leaving: the server is shutting down
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except Exception as exc:
            outcome = Outcome.failed(exc)
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not sent.started:
                problem = problem_for(status=500, detail=UNHANDLED_DETAIL, instance=scope["path"],
                                      request_id=state.get("request_id"), openai=True)
                await _send_problem(send, 500, encode_problem(problem), {})
        finally:
            if routed is not None and routed.events is not None:
                await routed.events.aclose()  # every path that opened an upstream stream closes it
            if gateway is not None and caller is not None:
                gateway.finish(routed or _unrouted(caller, parsed), outcome or Outcome.cancelled())

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

    @staticmethod
    async def _reply(send: Callable[[Any], Any], sent: _Sent, routed: Routed) -> None:
        reply = routed.reply
        assert reply is not None
        sent.started = True
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", reply.content_type.encode("latin-1")),
            (b"content-length", str(len(reply.body)).encode()), *_headers(routed.headers),
            _processing_ms(routed.caller)]})
        await send({"type": "http.response.body", "body": reply.body})

    @staticmethod
    async def _relay(send: Callable[[Any], Any], sent: _Sent, gateway: Gateway, routed: Routed, wants_usage: bool,
                     watch: _ClientWatch) -> Outcome:
        """Write the SSE body as the relay yields it; the outcome says how it ended."""
        tally = Tally()
        sent.started = True
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [*_SSE, *_headers(routed.headers), _processing_ms(routed.caller)]})
            async for chunk in gateway.relay(routed, tally, wants_usage=wants_usage):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return gateway.stream_outcome(tally, client_left=True)
        return gateway.stream_outcome(tally, client_left=False)


class _Sent:
    """Whether the response has started (after which errors can only end it)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


def _unrouted(caller: Caller, parsed: Parsed | None) -> Routed:
    """A request that never reached routing (refused input), for its accounting."""
    return Routed(caller=caller, model=parsed.model if parsed else "", known=False,
                  stream=parsed.stream if parsed else False, estimated_prompt=0)


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


def _processing_ms(caller: Caller) -> tuple[bytes, bytes]:
    return b"openai-processing-ms", str(int((time.perf_counter() - caller.started) * 1000)).encode()


async def _send_problem(send: Callable[[Any], Any], status: int, body: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        _PROBLEM, (b"content-length", str(len(body)).encode()), *_headers(headers)]})
    await send({"type": "http.response.body", "body": body})
