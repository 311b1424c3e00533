"""Anthropic Messages requests translated into chat completions requests."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from aiaas.inference.service.wire.messages.request import (
    Base64Source,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    PlainTextSource,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
)

__all__ = ["chat_request", "count_text"]


def _image_part(image: ImageBlock) -> dict[str, Any]:
    source = image.source
    if isinstance(source, UrlSource):
        url = source.url
    else:
        assert isinstance(source, Base64Source)  # parse_request refused file sources
        url = f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _parts(block: TextBlock | ImageBlock | DocumentBlock) -> list[dict[str, Any]]:
    """The chat content parts of a user-side block (checked by ``parse_request``: no file or PDF sources)."""
    if isinstance(block, TextBlock):
        return [{"type": "text", "text": block.text}]
    if isinstance(block, ImageBlock):
        return [_image_part(block)]
    source = block.source
    title = [{"type": "text", "text": block.title}] if block.title else []
    if isinstance(source, PlainTextSource):
        return [*title, {"type": "text", "text": source.data}]
    inner = source.content  # type: ignore[union-attr]
    if isinstance(inner, str):
        return [*title, {"type": "text", "text": inner}]
    return title + [part for b in inner for part in _parts(b)]


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # A lone text part as a plain string: every chat backend takes that, not all take part lists.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _user_messages(blocks: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            content = block.content
            result = [] if content is None else [TextBlock(content)] if isinstance(content, str) else content
            texts = []
            for item in result:
                for part in _parts(item):
                    (texts if part["type"] == "text" else images).append(part)
            # Chat tool messages carry neither an error flag nor images. is_error is dropped without a prefix:
            # the tool's own text says what failed, and words we add would change the client's prompt. The
            # images follow in the user message, ahead of the turn's own content.
            out.append({"role": "tool", "tool_call_id": block.tool_use_id,
                        "content": "\n".join(p["text"] for p in texts)})
        elif not isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            parts.extend(_parts(block))
    parts = images + parts
    if parts:
        out.append({"role": "user", "content": _content(parts)})
    return out


def _assistant_message(blocks: list[Any]) -> dict[str, Any]:
    # Thinking blocks are dropped: their signatures are Anthropic's, and chat backends take no prior reasoning.
    # Arguments keep non-ASCII text as is (ensure_ascii=False), as the model wrote them, not as \u escapes.
    texts = [b.text for b in blocks if isinstance(b, TextBlock)]
    calls = [{"id": b.id, "type": "function",
              "function": {"name": b.name, "arguments": json.dumps(b.input, separators=(",", ":"), ensure_ascii=False)}}
             for b in blocks if isinstance(b, ToolUseBlock)]
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _chat_messages(req: MessagesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = req.system if isinstance(req.system, str) else "\n\n".join(b.text for b in req.system or ())
    if system:
        out.append({"role": "system", "content": system})
    for message in req.messages:
        content = message.content
        if isinstance(content, str):
            out.append({"role": message.role, "content": content})
        elif message.role == "assistant":
            out.append(_assistant_message(content))
        elif message.role == "system":
            out.append({"role": "system", "content": "\n\n".join(b.text for b in content if isinstance(b, TextBlock))})
        else:
            out.extend(_user_messages(content))
    return out


def _chat_tools(req: MessagesRequest) -> list[dict[str, Any]]:
    tools = []
    for tool in req.tools or ():
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description is not None:
            function["description"] = tool.description
        if tool.strict is not None:
            function["strict"] = tool.strict
        tools.append({"type": "function", "function": function})
    return tools


_EFFORT = {"xhigh": "high", "max": "high"}


def chat_request(req: MessagesRequest, *, stream: bool) -> dict[str, Any]:
    """The chat completions request body for ``req`` (``model`` is the client's; the gateway replaces it)."""
    body: dict[str, Any] = {"model": req.model, "messages": _chat_messages(req)}
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    tools = _chat_tools(req)
    if tools:
        body["tools"] = tools
        choice = req.tool_choice
        if isinstance(choice, ToolChoiceAuto):
            body["tool_choice"] = "auto"
        elif isinstance(choice, ToolChoiceAny):
            body["tool_choice"] = "required"
        elif isinstance(choice, ToolChoiceTool):
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        elif isinstance(choice, ToolChoiceNone):
            body["tool_choice"] = "none"
        if getattr(choice, "disable_parallel_tool_use", None):
            body["parallel_tool_calls"] = False
    if req.stop_sequences:
        body["stop"] = list(req.stop_sequences)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.metadata is not None and req.metadata.user_id:
        body["user"] = req.metadata.user_id
    config = req.output_config
    if config is not None and config.format is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": config.format.schema, "strict": True}}
    if config is not None and config.effort is not None:
        # Chat's reasoning_effort stops at "high"; Anthropic's two higher levels ask for the most there is.
        body["reasoning_effort"] = _EFFORT.get(config.effort, config.effort)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def count_text(req: MessagesRequest) -> bytes:
    """The prompt as the chat request carries it (messages, then tools), as JSON bytes for the token estimator."""
    text = msgspec.json.encode(_chat_messages(req))
    tools = _chat_tools(req)
    return text + msgspec.json.encode(tools) if tools else text
