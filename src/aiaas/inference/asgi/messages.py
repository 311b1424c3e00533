"""Anthropic's Messages API (``POST /v1/messages``, ``/v1/messages/count_tokens``) on any chat-capable deployment.

The request is translated to a chat completion (:mod:`aiaas.inference.service.wire.messages`), routed,
admitted and metered exactly like ``/v1/chat/completions`` (the completion event says ``endpoint:
messages``), and the answer translated back to a Message or Anthropic's event stream. Anthropic's clients
authenticate with ``x-api-key`` (a bearer token works too) and get Anthropic's error shape. The
``anthropic-version`` header is accepted whatever it says, and ``anthropic-beta`` is ignored: no deployment
is called with Anthropic's own wire format, so there is nothing to forward it to.
"""

from __future__ import annotations

from typing import Any

import msgspec
import uuid_utils

from aiaas.inference.asgi.surface import (
    Exchange,
    Incoming,
    Surface,
    Translation,
    completion_of,
    relay_native,
    relay_translated,
    reply_native,
    send_json,
)
from aiaas.inference.service import telemetry
from aiaas.inference.service.calls import Outcome, Routed
from aiaas.inference.service.native import NativeTally
from aiaas.inference.service.requests import Native, Parsed, parse
from aiaas.inference.service.tokens import estimate_tokens
from aiaas.inference.service.wire import messages as wire

_encode = msgspec.json.encode
# What a deployment speaking Anthropic's API gets when the client sent no version (Anthropic's current one).
DEFAULT_VERSION = "2023-06-01"


def _native(x: Exchange, incoming: Incoming) -> Native:
    """The request for a deployment that speaks Anthropic's API: the client's body, with its
    ``anthropic-version`` and ``anthropic-beta`` headers (only there: other deployments never see them)."""
    headers = {"anthropic-version": x.header(b"anthropic-version") or DEFAULT_VERSION}
    beta = x.header(b"anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    return Native(api="messages", raw=incoming.raw, headers=headers)


def _interrupted(tally: NativeTally, message: str) -> bytes:
    return b"event: error\ndata: " + _encode({"type": "error", "error": {"type": "api_error",
                                                                         "message": message}}) + b"\n\n"


def _request_id(x: Exchange) -> list[tuple[bytes, bytes]]:
    # Anthropic's SDKs read the request id from ``request-id`` (exceptions and ``_request_id`` carry it).
    return [(b"request-id", x.caller.request_id.encode("latin-1"))] if x.caller.request_id else []


def usage_of(routed: Routed, outcome: Outcome) -> wire.Usage:
    """The usage the message reports: exactly the tokens the request is metered with."""
    prompt, completion = telemetry.tokens(routed, outcome)
    cached = outcome.cached_prompt_tokens if outcome.usage_given else 0
    # Anthropic's input_tokens excludes cache reads: the prompt metered is input_tokens + cache_read_input_tokens.
    return wire.Usage(input_tokens=prompt - cached, output_tokens=completion, cache_read_input_tokens=cached)


class MessagesSurface(Surface):
    """``POST /v1/messages``."""

    errors = "anthropic"
    x_api_key = True

    def parse(self, endpoint: str, body: bytes) -> Incoming:
        """Decode and validate the Messages request (400 naming the field, or the tool we do not run)."""
        return Incoming.of(wire.parse_request(body), body)

    async def serve(self, x: Exchange, request: Any) -> Outcome:
        """Route the translated chat request (or the request itself, to a deployment that speaks Anthropic's
        API) and answer with a Message or Anthropic's event stream."""
        incoming: Incoming = request
        req = incoming.req
        parsed = parse("chat.completions", _encode(wire.chat_request(req, stream=bool(req.stream))))
        parsed.native = _native(x, incoming)
        x.routed = routed = await x.gateway.route(x.caller, x.principal, parsed)
        if routed.error is not None:
            raise routed.error
        if routed.native:  # the deployment answered in Anthropic's format itself: its bytes, metered as they are
            if routed.events is None:
                return await reply_native(x, extra=_request_id(x))
            return await relay_native(x, interrupted=_interrupted, extra=_request_id(x))
        message_id = f"msg_{uuid_utils.uuid7().hex}"
        if routed.events is None:
            outcome = x.gateway.outcome_of_reply(routed)
            message = wire.message_of_completion(completion_of(routed), req, message_id=message_id,
                                                 model=req.model, usage=usage_of(routed, outcome))
            await send_json(x, _encode(message), extra=_request_id(x))
            return outcome
        stream = wire.MessageStream(req, message_id=message_id, model=req.model,
                                    estimated_input_tokens=parsed.estimated_prompt_tokens)

        async def finish(outcome: Outcome) -> list[bytes]:
            return stream.finish(usage_of(routed, outcome))

        return await relay_translated(x, Translation(start=stream.start, chunk=stream.chunk, finish=finish,
                                                     fail=lambda message: stream.fail(message)),
                                      extra=_request_id(x))


class CountTokensSurface(Surface):
    """``POST /v1/messages/count_tokens``: no upstream is called; the request still needs access to the model
    and counts against the request rate limits."""

    errors = "anthropic"
    x_api_key = True

    def parse(self, endpoint: str, body: bytes) -> wire.MessagesRequest:
        """Decode and validate (``max_tokens`` is not required here)."""
        return wire.parse_request(body, count_tokens=True)

    async def serve(self, x: Exchange, request: Any) -> Outcome:
        """Admit, then answer the estimate of the input tokens (the same estimate admission uses)."""
        req: wire.MessagesRequest = request
        parsed = Parsed(endpoint="chat.completions", model=req.model, stream=False, wants_usage=False, max_tokens=0,
                        estimated_prompt_tokens=0, raw={})
        x.routed = routed = await x.gateway.admit_only(x.caller, x.principal, parsed)
        if routed.error is not None:
            raise routed.error
        await send_json(x, _encode({"input_tokens": estimate_tokens(wire.count_text(req))}), extra=_request_id(x))
        return Outcome(status="ok", http_status=200)
