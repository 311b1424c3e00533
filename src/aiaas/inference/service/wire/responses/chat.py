"""A Responses request as the chat completions request a backend runs."""

from __future__ import annotations

from typing import Any

import msgspec

from aiaas.inference.service.wire.responses.request import FormatJsonObject, FormatJsonSchema, ResponsesRequest
from aiaas.kernel.errors import BadRequest

# Chat templates of local models know system, user, assistant and tool; many drop a "developer" message
# without a word, so it travels as the system message it is to them.
_CHAT_ROLE = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}


def chat_request(
    req: ResponsesRequest, *, history: list[dict[str, Any]], items: list[dict[str, Any]], stream: bool
) -> dict[str, Any]:
    """The chat completions body for ``req`` (``model`` is ``req.model``; the gateway sets it per deployment).

    ``messages`` are the instructions (as a system message), then ``history`` (the stored input and output
    items of the previous responses, oldest first) and ``items`` (this request's :func:`input_items`).
    ``store``, ``metadata``, ``previous_response_id``, ``include`` and the like never reach the backend.
    """
    messages = [{"role": "system", "content": req.instructions}] if req.instructions else []
    messages += chat_messages([*history, *items])
    if not messages:
        raise BadRequest("The request has no input: send at least one input item or instructions.",
                         code="empty_input", param="input")
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    tools = [_chat_tool(t) for t in req.tools or ()]
    choice = req.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        # Chat has no "these tools, but keep the others in context": the closest is offering only those.
        allowed = {t["name"] for t in choice["tools"]}
        tools = [t for t in tools if t["function"]["name"] in allowed]
        choice = choice["mode"]
    # OpenAI refuses tool_choice and parallel_tool_calls in a chat request without tools.
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = choice if isinstance(choice, str) else \
                {"type": "function", "function": {"name": choice["name"]}}
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    text = req.text
    if text is not None and isinstance(text.format, FormatJsonSchema):
        body["response_format"] = {"type": "json_schema", "json_schema": msgspec.to_builtins(text.format)}
        del body["response_format"]["json_schema"]["type"]
    elif text is not None and isinstance(text.format, FormatJsonObject):
        body["response_format"] = {"type": "json_object"}
    optional = {
        "max_tokens": req.max_output_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "user": req.user,
        "reasoning_effort": req.reasoning.effort if req.reasoning else None,
        "verbosity": text.verbosity if text else None,
        "prompt_cache_key": req.prompt_cache_key,
        "safety_identifier": req.safety_identifier,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool["type"] == "custom":
        # A custom tool takes free text; chat tools take JSON, so the text travels as one string argument.
        # A grammar cannot be enforced through chat: it is told to the model instead.
        about = f"The input of the {tool['name']} tool, as raw text."
        fmt = tool.get("format") or {}
        if fmt.get("type") == "grammar":
            about += f" It must match this {fmt.get('syntax')} grammar:\n{fmt.get('definition')}"
        fn["parameters"] = {"type": "object", "properties": {"input": {"type": "string", "description": about}},
                            "required": ["input"], "additionalProperties": False}
        return {"type": "function", "function": fn}
    # Some chat templates walk parameters.properties; a tool without parameters gets an empty object schema.
    fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored input and output items as chat messages.

    Consecutive ``function_call``/``custom_tool_call`` items (and an assistant message right before them)
    become one assistant message with ``tool_calls``; call outputs become ``tool`` messages. ``reasoning``
    items are dropped: chat completions have no field a backend reads them back from (OpenAI's encrypted
    reasoning is opaque to any other model, and a local backend's templates discard past reasoning).
    Images and files in a call's output cannot ride in a ``tool`` message; they follow the run of tool
    messages as a user message.
    """
    messages: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []

    def add(message: dict[str, Any]) -> None:
        if attachments:
            messages.append({"role": "user", "content": attachments.copy()})
            attachments.clear()
        messages.append(message)

    for item in items:
        kind = item.get("type") or "message"
        if kind == "message":
            role = _CHAT_ROLE.get(item.get("role", ""), "user")
            content = item.get("content")
            if role == "assistant":
                add({"role": "assistant", "content": _text_of(content)})
            else:
                add({"role": role, "content": _chat_content(content)})
        elif kind in ("function_call", "custom_tool_call"):
            # An empty string is not JSON: backends that parse past arguments (vLLM does) want "{}".
            arguments = (item.get("arguments") or "{}") if kind == "function_call" else \
                msgspec.json.encode({"input": item.get("input") or ""}).decode()
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": arguments}}
            last = messages[-1] if messages and not attachments else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last["content"]:
                    last["content"] = None
            else:
                add({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, list):
                attachments += [p for p in map(_chat_part, output) if p["type"] != "text"]
                output = "".join(p.get("text") or "" for p in output if p.get("type") == "input_text")
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output or ""})
        # reasoning (see the docstring) and anything unknown: nothing a chat backend can take
    if attachments:
        messages.append({"role": "user", "content": attachments})
    return messages


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for part in content or ():
        texts.append((part.get("refusal") or "") if part.get("type") == "refusal" else (part.get("text") or ""))
    return "".join(texts)


def _chat_content(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = [_chat_part(p) for p in content or ()]
    # One text part travels as a plain string: every backend and chat template takes that form.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts or ""


def _chat_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "input_image":
        url = {"url": part.get("image_url")}
        detail = part.get("detail")
        if detail in ("low", "high", "auto"):
            url["detail"] = detail
        elif detail == "original":  # chat knows no "original"; "high" is its full-resolution setting
            url["detail"] = "high"
        return {"type": "image_url", "image_url": url}
    if kind == "input_file":
        file = {"file_data": part.get("file_data")}
        if part.get("filename"):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    return {"type": "text", "text": part.get("text") or part.get("refusal") or ""}
