"""OpenAI's Responses API (``POST /v1/responses``) on any chat-capable deployment.

The request is translated to a chat completion (:mod:`aiaas.inference.service.wire.responses`), with the
conversation of ``previous_response_id`` rebuilt from storage first, then routed, admitted and metered
exactly like ``/v1/chat/completions`` (the completion event says ``endpoint: responses``). The answer is
translated back: a Response object, or OpenAI's Responses event stream. With ``store`` (the default) the
response is written before the client gets its last byte, so it can be continued at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
from aiaas.inference.service.requests import Native, parse
from aiaas.inference.service.stored_responses import ResponseStore
from aiaas.inference.service.wire import responses as wire
from aiaas.kernel.errors import ServiceUnavailable

log = logging.getLogger("aiaas.inference")
_encode = msgspec.json.encode


def _native(incoming: Incoming, history: list[dict[str, Any]], items: list[dict[str, Any]]) -> Native:
    """The request for a Responses-speaking deployment: the client's body, with the conversation of
    ``previous_response_id`` spelled out (the upstream never saw our ids) and ``store`` off there (the
    gateway keeps the response, in this org's storage)."""
    raw = dict(incoming.raw)
    if history:
        raw["input"] = msgspec.Raw(_encode([*history, *items]))
    raw.pop("previous_response_id", None)
    raw["store"] = msgspec.Raw(b"false")
    return Native(api="responses", raw=raw)


def _interrupted(tally: NativeTally, message: str) -> bytes:
    event = {"type": "error", "code": "server_error", "message": message, "param": None,
             "sequence_number": tally.last_sequence + 1}
    return b"event: error\ndata: " + _encode(event) + b"\n\n"


def new_id(prefix: str) -> str:
    """An id in OpenAI's style (``resp_…``, ``msg_…``, ``fc_…``), time-ordered and unguessable."""
    return f"{prefix}_{uuid_utils.uuid7().hex}"


def usage_of(routed: Routed, outcome: Outcome) -> wire.Usage:
    """The usage the response reports: exactly the tokens the request is metered with."""
    prompt, completion = telemetry.tokens(routed, outcome)
    return wire.Usage(input_tokens=prompt, output_tokens=completion,
                      cached_tokens=outcome.cached_prompt_tokens if outcome.usage_given else 0,
                      reasoning_tokens=outcome.reasoning_tokens if outcome.usage_given else 0)


class ResponsesSurface(Surface):
    """``POST /v1/responses``."""

    def __init__(self, store: Callable[[], ResponseStore | None]) -> None:
        self._store = store

    def parse(self, endpoint: str, body: bytes) -> Incoming:
        """Decode and validate the Responses request (400 naming the field, or the tool we do not run)."""
        req = wire.parse_request(body)
        return Incoming.of(req, body)

    async def serve(self, x: Exchange, request: Any) -> Outcome:
        """Rebuild the conversation, route the translated chat request (or the request itself, to a
        deployment that speaks the Responses API), answer in the Responses shapes."""
        incoming: Incoming = request
        req = incoming.req
        store = self._store()
        if store is None and (req.store or req.previous_response_id):
            raise ServiceUnavailable("Stored responses are not available in this process.", code="store_unavailable")
        history: list[dict[str, Any]] = []
        if req.previous_response_id:
            assert store is not None
            history = await store.history(org_id=x.caller.org_id, response_id=req.previous_response_id)
        items = wire.input_items(req, new_id=new_id)
        chat = wire.chat_request(req, history=history, items=items, stream=bool(req.stream))
        parsed = parse("chat.completions", _encode(chat))
        parsed.native = _native(incoming, history, items)
        x.routed = routed = await x.gateway.route(x.caller, x.principal, parsed)
        if routed.error is not None:
            raise routed.error
        response_id, created_at = new_id("resp"), int(time.time())
        custom = wire.custom_tool_names(req)

        async def keep(response: dict[str, Any]) -> None:
            if not req.store or store is None:
                return
            try:
                await store.save(org_id=x.caller.org_id, key_id=x.caller.key_id, response=response,
                                 input_items=items, previous_response_id=req.previous_response_id)
            except Exception:  # the answer was generated and is the client's; only its storage failed
                log.exception("could not store response %s", response_id)

        if routed.native:  # the deployment answered in the Responses API itself: its bytes, metered as they are
            if routed.events is None:
                return await reply_native(x, keep=keep)
            return await relay_native(x, interrupted=_interrupted, keep=keep)
        if routed.events is None:
            outcome = x.gateway.outcome_of_reply(routed)
            output, status, reason = wire.output_of_completion(completion_of(routed), new_id=new_id,
                                                               custom_tools=custom)
            response = wire.response_object(req, response_id=response_id, created_at=created_at, status=status,
                                            output=output, usage=usage_of(routed, outcome), incomplete_reason=reason)
            await keep(response)
            await send_json(x, _encode(response))
            return outcome

        stream = wire.ResponseStream(req, response_id=response_id, created_at=created_at, new_id=new_id,
                                     custom_tools=custom)

        async def finish(outcome: Outcome) -> list[bytes]:
            events = stream.finish(usage_of(routed, outcome))
            await keep(stream.response)
            return events

        return await relay_translated(x, Translation(start=stream.start, chunk=stream.chunk, finish=finish,
                                                     fail=lambda message: stream.fail(message)))
