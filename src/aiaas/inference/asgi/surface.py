"""What every surface of the edge implements, the exchange it serves, and the relay that translates a chat
stream into another wire format's events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from aiaas.inference.asgi.transport import SSE_HEADERS, ClientWatch, Sent, headers_of, processing_ms
from aiaas.inference.service.calls import Caller, Outcome, Routed, Tally
from aiaas.inference.service.gateway import Gateway
from aiaas.inference.service.native import NativeTally
from aiaas.kernel.errors import UpstreamError
from aiaas.kernel.security import Principal

log = logging.getLogger("aiaas.inference")

Send = Callable[[Any], Any]
_decode = msgspec.json.decode
_raw_fields = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode


@dataclass(slots=True)
class Exchange:
    """One request as a surface serves it. ``routed`` is set once the gateway routed it, so the edge can
    close its stream and account it however the surface ends."""

    send: Send
    sent: Sent
    watch: ClientWatch
    gateway: Gateway
    caller: Caller
    principal: Principal
    request_headers: list[tuple[bytes, bytes]]
    routed: Routed | None = None

    def header(self, name: bytes) -> str | None:
        """A request header's value (``name`` in lower case), if the client sent it."""
        for key, value in self.request_headers:
            if key == name:
                return value.decode("latin-1")
        return None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request validated in its wire format (``req``, with ``model`` and ``stream``) and its body's
    fields as the client's own bytes (for a deployment that speaks that format itself)."""

    req: Any
    raw: dict[str, msgspec.Raw]

    @classmethod
    def of(cls, req: Any, body: bytes) -> Incoming:
        """``req`` with the fields of the body it was decoded from (valid JSON: it was just decoded)."""
        return cls(req=req, raw=_raw_fields(body))

    @property
    def model(self) -> str:
        return str(self.req.model)

    @property
    def stream(self) -> bool:
        return bool(self.req.stream)


def client_left(gateway: Gateway, tally: Tally) -> Outcome:
    """The outcome of a stream whose client went away (the watch cancelled the serving task): the
    cancellation is consumed, so the edge can still account the request."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    return gateway.stream_outcome(tally, client_left=True)


class Surface:
    """One wire format the edge serves: how its body is parsed and how a request is served."""

    errors: ClassVar[str] = "openai"  # the error shape of its problem documents: "openai" | "anthropic"
    x_api_key: ClassVar[bool] = False  # whether ``x-api-key`` authenticates (Anthropic's clients send it)

    def parse(self, endpoint: str, body: bytes) -> Any:
        """The validated request (with ``model`` and ``stream``); raises ``AppError`` (400) when invalid."""
        raise NotImplementedError

    async def serve(self, x: Exchange, request: Any) -> Outcome:
        """Route the request, send the response, and return how it ended; raises ``AppError`` before the
        response has started."""
        raise NotImplementedError


async def send_json(x: Exchange, body: bytes, *, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole 200 JSON response with the admission's rate-limit headers."""
    x.sent.started = True
    routed_headers = x.routed.headers if x.routed is not None else {}
    await x.send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers_of(routed_headers), processing_ms(x.caller), *(extra or [])]})
    await x.send({"type": "http.response.body", "body": body})


def completion_of(routed: Routed) -> dict[str, Any]:
    """The upstream's whole chat completion as a dict; 502 when it is not a JSON object."""
    reply = routed.reply
    assert reply is not None
    try:
        chat = _decode(reply.body)
    except msgspec.DecodeError:
        chat = None
    if not isinstance(chat, dict):
        raise UpstreamError("The upstream's answer is not a chat completion.", code="upstream_invalid_response")
    return chat


def chunk_of(event: bytes) -> dict[str, Any] | None:
    """The chat chunk of one relayed SSE event (None for ``[DONE]``, comments and what is not JSON)."""
    if not event.startswith(b"data:"):
        return None
    payload = event[5:].strip()
    if not payload or payload == b"[DONE]":
        return None
    try:
        chunk = _decode(payload)
    except msgspec.DecodeError:
        return None
    return chunk if isinstance(chunk, dict) else None


def _failure_message(chunk: dict[str, Any]) -> str:
    error = chunk.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return "The upstream reported an error mid-stream."


@dataclass(frozen=True, slots=True)
class Translation:
    """A stream translator's four steps (each returns the SSE events to send, as bytes)."""

    start: Callable[[], list[bytes]]
    chunk: Callable[[dict[str, Any]], list[bytes]]
    finish: Callable[[Outcome], Awaitable[list[bytes]]]  # the stream ended well: close it, with the usage
    fail: Callable[[str], list[bytes]]  # the upstream broke off or reported an error


async def relay_translated(x: Exchange, t: Translation, *, extra: list[tuple[bytes, bytes]] | None = None) -> Outcome:
    """Relay the routed chat stream as another wire format's events. The chat events are counted as they
    pass (the same :class:`Tally` as the chat route, so metering is identical); the final events carry the
    usage that was metered. An upstream that breaks off or reports an error in band ends the stream with
    the format's failure event."""
    routed = x.routed
    assert routed is not None and routed.events is not None
    gateway = x.gateway
    tally = Tally()
    x.sent.started = True
    send = x.send

    async def body(events: list[bytes]) -> None:
        if events:
            await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})

    try:
        await send({"type": "http.response.start", "status": 200, "headers": [
            *SSE_HEADERS, *headers_of(routed.headers), processing_ms(routed.caller), *(extra or [])]})
        await body(t.start())
        failed = False
        async for event in gateway.relay(routed, tally, wants_usage=True):
            chunk = chunk_of(event)
            if chunk is None or failed:
                continue
            if chunk.get("error") is not None and not chunk.get("choices"):
                failed = True
                await body(t.fail(_failure_message(chunk)))
                continue
            await body(t.chunk(chunk))
        outcome = gateway.stream_outcome(tally, client_left=False)
        if not failed:
            await body(await t.finish(outcome) if outcome.status == "ok" else t.fail("The upstream stream failed."))
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not x.watch.gone:
            raise  # not the client leaving: the server is shutting down
        return client_left(gateway, tally)
    return outcome


async def reply_native(x: Exchange, *, keep: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                       extra: list[tuple[bytes, bytes]] | None = None) -> Outcome:
    """Send a passed-through whole answer as the upstream's bytes, metered in its own format (and kept,
    with ``keep``, before the client has it)."""
    routed = x.routed
    assert routed is not None and routed.reply is not None and routed.upstream is not None
    api = "responses" if routed.caller.endpoint == "responses" else "messages"
    tally = NativeTally(api)
    tally.body(routed.reply.body)
    if keep is not None and tally.final is not None:
        await keep(tally.final)
    reply = routed.reply
    x.sent.started = True
    await x.send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", reply.content_type.encode("latin-1")), (b"content-length", str(len(reply.body)).encode()),
        *headers_of(routed.headers), processing_ms(routed.caller), *(extra or [])]})
    await x.send({"type": "http.response.body", "body": reply.body})
    return tally.outcome(status="ok")


async def relay_native(x: Exchange, *, interrupted: Callable[[NativeTally, str], bytes],
                       keep: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                       extra: list[tuple[bytes, bytes]] | None = None) -> Outcome:
    """Relay a passed-through stream as the upstream's bytes, metered in its own format. ``keep`` stores the
    final Response before the event that carries it is sent; ``interrupted`` renders the format's error
    event when the upstream breaks off."""
    routed = x.routed
    assert routed is not None and routed.events is not None
    api = "responses" if routed.caller.endpoint == "responses" else "messages"
    tally = NativeTally(api)
    gateway = x.gateway
    x.sent.started = True
    kept = False
    try:
        await x.send({"type": "http.response.start", "status": 200, "headers": [
            *SSE_HEADERS, *headers_of(routed.headers), processing_ms(routed.caller), *(extra or [])]})
        async for event in gateway.relay(routed, tally, wants_usage=True,
                                         interrupted=lambda message: interrupted(tally, message)):
            if keep is not None and not kept and tally.final is not None:
                kept = True
                await keep(tally.final)
            await x.send({"type": "http.response.body", "body": event, "more_body": True})
        await x.send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not x.watch.gone:
            raise  # not the client leaving: the server is shutting down
        return client_left(gateway, tally)
    return gateway.stream_outcome(tally, client_left=False)
