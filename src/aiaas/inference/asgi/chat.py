"""OpenAI's own endpoints (chat completions, completions, embeddings): the upstream's bytes relayed as they are."""

from __future__ import annotations

import asyncio
from typing import Any

from aiaas.inference.asgi.surface import Exchange, Surface, client_left
from aiaas.inference.asgi.transport import SSE_HEADERS, headers_of, processing_ms
from aiaas.inference.service.calls import Outcome, Routed, Tally
from aiaas.inference.service.requests import Parsed, parse


class ChatSurface(Surface):
    """The hot path: no translation, the upstream's reply or events sent unchanged (the usage chunk
    stripped from a stream that did not ask for it)."""

    def parse(self, endpoint: str, body: bytes) -> Parsed:
        """Decode and validate with ``requests.parse``."""
        return parse(endpoint, body)

    async def serve(self, x: Exchange, request: Any) -> Outcome:
        """Route, then send the reply or relay the stream."""
        parsed: Parsed = request
        x.routed = routed = await x.gateway.route(x.caller, x.principal, parsed)
        if routed.error is not None:
            raise routed.error
        if routed.events is not None:
            return await _relay(x, routed, parsed.wants_usage)
        await _reply(x, routed)
        return x.gateway.outcome_of_reply(routed)


async def _reply(x: Exchange, routed: Routed) -> None:
    reply = routed.reply
    assert reply is not None
    x.sent.started = True
    await x.send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", reply.content_type.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode()), *headers_of(routed.headers),
        processing_ms(routed.caller)]})
    await x.send({"type": "http.response.body", "body": reply.body})


async def _relay(x: Exchange, routed: Routed, wants_usage: bool) -> Outcome:
    """Write the SSE body as the relay yields it; the outcome says how it ended."""
    gateway = x.gateway
    send = x.send
    tally = Tally()
    x.sent.started = True
    try:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, *headers_of(routed.headers), processing_ms(routed.caller)]})
        async for chunk in gateway.relay(routed, tally, wants_usage=wants_usage):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not x.watch.gone:
            raise  # not the client leaving: the server is shutting down
        return client_left(gateway, tally)
    return gateway.stream_outcome(tally, client_left=False)
