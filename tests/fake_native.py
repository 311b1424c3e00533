"""The Responses API and Anthropic's Messages API as an upstream that speaks them itself (for deployments
with ``native_apis``), served by :class:`fake_upstream.FakeUpstream` at ``/v1/responses`` and ``/v1/messages``.

Upstream model ``native`` answers ``NATIVE_TEXT`` (whole or streamed in two deltas) with the usage below;
``native-drop`` starts a stream and drops the connection after the first delta.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

NATIVE_TEXT = "Hello from native"
RESPONSES_USAGE = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                   "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}
# Anthropic counts cache reads apart from input_tokens: the prompt is 5 + 2 = 7 tokens.
MESSAGES_USAGE = {"input_tokens": 5, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 0,
                  "output_tokens": 4}


def _sse(kind: str, doc: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(doc)}\n\n".encode()


def _response(body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {"id": "resp_native_" + str(id(body)), "object": "response", "created_at": 1_700_000_000,
            "status": status, "model": body.get("model"), "output": output, "usage": usage,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": None, "top_p": None,
            "previous_response_id": None, "store": body.get("store", True), "text": {"format": {"type": "text"}},
            "truncation": "disabled", "reasoning": {"effort": None, "summary": None}}


def _message_item(text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": "msg_native", "role": "assistant", "status": status,
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text else []}


async def _record(up: Any, request: web.Request) -> dict[str, Any]:
    body: dict[str, Any] = await request.json()
    up.requests.append(body)
    up.headers.append(dict(request.headers))
    return body


async def responses(up: Any, request: web.Request) -> web.StreamResponse:
    body = await _record(up, request)
    done_item = _message_item(NATIVE_TEXT, "completed")
    if not body.get("stream"):
        return web.json_response(_response(body, "completed", [done_item], RESPONSES_USAGE))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    seq = iter(range(100))
    await resp.write(_sse("response.created", {"type": "response.created", "sequence_number": next(seq),
                                                "response": _response(body, "in_progress", [], None)}))
    await resp.write(_sse("response.output_item.added", {
        "type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0,
        "item": _message_item("", "in_progress")}))
    await resp.write(_sse("response.content_part.added", {
        "type": "response.content_part.added", "sequence_number": next(seq), "item_id": "msg_native",
        "output_index": 0, "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}))
    for i, piece in enumerate(("Hello", " from native")):
        if i == 1 and body.get("model") == "native-drop":
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(_sse("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": "msg_native",
            "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}))
    await resp.write(_sse("response.output_item.done", {"type": "response.output_item.done",
                                                        "sequence_number": next(seq), "output_index": 0,
                                                        "item": done_item}))
    await resp.write(_sse("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                                  "response": _response(body, "completed", [done_item],
                                                                        RESPONSES_USAGE)}))
    await resp.write_eof()
    return resp


async def messages(up: Any, request: web.Request) -> web.StreamResponse:
    body = await _record(up, request)
    message = {"id": "msg_native", "type": "message", "role": "assistant", "model": body.get("model"),
               "content": [{"type": "text", "text": NATIVE_TEXT}], "stop_reason": "end_turn",
               "stop_sequence": None, "usage": MESSAGES_USAGE}
    if not body.get("stream"):
        return web.json_response(message)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    start = {**message, "content": [], "stop_reason": None, "usage": {**MESSAGES_USAGE, "output_tokens": 1}}
    await resp.write(_sse("message_start", {"type": "message_start", "message": start}))
    await resp.write(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                  "content_block": {"type": "text", "text": ""}}))
    for i, piece in enumerate(("Hello", " from native")):
        if i == 1 and body.get("model") == "native-drop":
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": piece}}))
    await resp.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    await resp.write(_sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                             "stop_sequence": None},
                                            "usage": {"output_tokens": MESSAGES_USAGE["output_tokens"]}}))
    await resp.write(_sse("message_stop", {"type": "message_stop"}))
    await resp.write_eof()
    return resp
