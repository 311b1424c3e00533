"""A request's input as the stored input items ``GET /v1/responses/{id}/input_items`` lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiaas.inference.service.wire.responses.request import ResponsesRequest


def input_items(req: ResponsesRequest, *, new_id: Callable[[str], str]) -> list[dict[str, Any]]:
    """``req.input`` as the input items ``GET /v1/responses/{id}/input_items`` lists, each with an ``id``.

    A string becomes one user message; the ``{"role", "content"}`` shorthand becomes a ``message`` item with
    content parts (``output_text`` for the assistant). ``new_id(prefix)`` makes the ids of items without one.
    The request must have passed :func:`parse_request`.
    """
    if isinstance(req.input, str):
        return [_message({"role": "user", "content": req.input}, new_id)]
    return [_item(item, new_id) for item in req.input]


def _item(item: dict[str, Any], new_id: Callable[[str], str]) -> dict[str, Any]:
    kind = item.get("type") or "message"
    if kind == "message":
        return _message(item, new_id)
    if kind == "reasoning":
        summary = [{"type": "summary_text", "text": s["text"]} for s in item.get("summary") or ()]
        out: dict[str, Any] = {"id": item.get("id") or new_id("rs"), "type": "reasoning", "summary": summary}
        if item.get("content") is not None:
            out["content"] = [{"type": "reasoning_text", "text": c["text"]} for c in item["content"]]
        if item.get("encrypted_content") is not None:
            out["encrypted_content"] = item["encrypted_content"]
        return out
    prefix = {"function_call": "fc", "custom_tool_call": "ctc", "function_call_output": "fco",
              "custom_tool_call_output": "ctco"}[kind]
    out = {"id": item.get("id") or new_id(prefix), "type": kind, "call_id": item["call_id"]}
    if kind == "function_call":
        out |= {"name": item["name"], "arguments": item["arguments"]}
    elif kind == "custom_tool_call":
        out |= {"name": item["name"], "input": item["input"]}
    else:
        output = item["output"]
        out["output"] = output if isinstance(output, str) else [_input_part(p) for p in output]
    out["status"] = item.get("status") or "completed"
    return out


def _message(item: dict[str, Any], new_id: Callable[[str], str]) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    if role == "assistant":
        parts = [_output_part(p) for p in content] if isinstance(content, list) else [_output_part(content)]
    else:
        parts = [_input_part(p) for p in content] if isinstance(content, list) else [_input_part(content)]
    out = {"id": item.get("id") or new_id("msg"), "type": "message", "role": role, "content": parts,
           "status": item.get("status") or "completed"}
    if role == "assistant" and item.get("phase"):
        out["phase"] = item["phase"]
    return out


def _input_part(part: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "input_text", "text": part}
    if part["type"] == "input_text":
        return {"type": "input_text", "text": part["text"]}
    if part["type"] == "input_image":
        return {"type": "input_image", "image_url": part["image_url"], "detail": part.get("detail") or "auto"}
    out = {"type": "input_file", "file_data": part["file_data"]}
    if part.get("filename"):
        out["filename"] = part["filename"]
    return out


def _output_part(part: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "output_text", "text": part, "annotations": []}
    if part["type"] == "refusal":
        return {"type": "refusal", "refusal": part["refusal"]}
    # Annotations (citations of OpenAI's hosted tools) mean nothing to a chat backend: not kept.
    return {"type": "output_text", "text": part["text"], "annotations": []}
