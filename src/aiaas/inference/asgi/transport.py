"""The transport pieces every inference surface shares: the bounded body read, the client watch, the
bearer (or ``x-api-key``) token, and how problem documents and headers are written to the ASGI ``send``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiaas.inference.service.calls import Caller
from aiaas.kernel.errors import PROBLEM_JSON, BodyTooLarge
from aiaas.kernel.guard import unauthenticated
from aiaas.kernel.security import bearer_token, token_kind

Scope = dict[str, Any]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
PROBLEM_HEADER = (b"content-type", PROBLEM_JSON.encode())


def headers_of(pairs: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs of a dict."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs.items()]


async def read_body(scope: Scope, receive: Callable[[], Any], limit: int) -> bytes:
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


class ClientWatch:
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

    async def __aenter__(self) -> ClientWatch:
        self._task = asyncio.current_task()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="aiaas-client-watch")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)


class Sent:
    """Whether the response has started (after which errors can only end it)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


def token_of(scope: Scope, *, x_api_key: bool = False) -> str:
    """The request's token: ``Authorization: Bearer``, or (on the Anthropic routes, as Anthropic's clients
    send it) ``x-api-key``; 401 when it is missing or cannot be one of ours."""
    header = None
    api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
        elif name == b"x-api-key" and x_api_key:
            api_key = value.decode("latin-1").strip()
    token = bearer_token(header) if header is not None else api_key or None
    if token is None:
        raise unauthenticated("Missing API key: send `x-api-key: <API key>` or `Authorization: Bearer <API key>`."
                              if x_api_key else
                              "Missing bearer token: send `Authorization: Bearer <API key or session token>`.")
    if not token_kind(token):
        raise unauthenticated("Invalid, expired or revoked API key or session token.")
    return token


def processing_ms(caller: Caller) -> tuple[bytes, bytes]:
    """OpenAI's ``openai-processing-ms`` header: the time until the response started."""
    return b"openai-processing-ms", str(int((time.perf_counter() - caller.started) * 1000)).encode()


async def send_problem(send: Callable[[Any], Any], status: int, body: bytes, headers: dict[str, str]) -> None:
    """Write a whole problem response."""
    await send({"type": "http.response.start", "status": status, "headers": [
        PROBLEM_HEADER, (b"content-length", str(len(body)).encode()), *headers_of(headers)]})
    await send({"type": "http.response.body", "body": body})
