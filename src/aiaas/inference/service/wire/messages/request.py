"""Anthropic Messages requests: the shapes, decoded and validated once with msgspec."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from aiaas.inference.schemas import MAX_TOKENS_LIMIT, _RequestModel
from aiaas.inference.service.requests import decode_body, param_of
from aiaas.kernel.errors import BadRequest

__all__ = ["MessagesRequest", "parse_request", "thinking_enabled"]

_MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS_LIMIT)]
_Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]


# --- content blocks (tagged by "type"; a type outside these unions fails decoding and is explained below) ---


class TextBlock(msgspec.Struct, tag="text"):
    text: str


class Base64Source(msgspec.Struct, tag="base64"):
    media_type: str
    data: str


class UrlSource(msgspec.Struct, tag="url"):
    url: str


class FileSource(msgspec.Struct, tag="file"):
    file_id: str


class ImageBlock(msgspec.Struct, tag="image"):
    source: Base64Source | UrlSource | FileSource


class PlainTextSource(msgspec.Struct, tag="text"):
    data: str


class ContentSource(msgspec.Struct, tag="content"):
    content: str | list[TextBlock | ImageBlock]


class DocumentBlock(msgspec.Struct, tag="document", kw_only=True):
    source: Base64Source | UrlSource | FileSource | PlainTextSource | ContentSource
    title: str | None = None


class ToolUseBlock(msgspec.Struct, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(msgspec.Struct, tag="tool_result", kw_only=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] | None = None
    is_error: bool | None = None


class ThinkingBlock(msgspec.Struct, tag="thinking"):
    thinking: str = ""


class RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking"):
    data: str = ""


Block = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class InputMessage(msgspec.Struct, kw_only=True):
    # A system turn inside messages is in the SDK's MessageParam; its content can only be text blocks.
    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


# --- tools and options ---


class Tool(msgspec.Struct, kw_only=True):
    # One shape for custom and server tools, so a server tool is refused by its type rather than by
    # whichever of its fields a custom-tool Struct happens not to know.
    type: str | None = None
    name: str = ""  # required of custom tools; Anthropic's toolsets have none
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoiceAuto(msgspec.Struct, tag="auto", kw_only=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(msgspec.Struct, tag="any", kw_only=True):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(msgspec.Struct, tag="tool", kw_only=True):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(msgspec.Struct, tag="none"):
    pass


class SystemText(msgspec.Struct, tag="text"):
    text: str


class _Metadata(msgspec.Struct, kw_only=True):
    user_id: str | None = None


class _ThinkingConfig(msgspec.Struct, kw_only=True):
    # The type is kept open ("enabled", "disabled", "adaptive", ...): it only decides whether reasoning is
    # shown, so a new Anthropic mode should not turn into a 400.
    type: str
    budget_tokens: int | None = None


class _OutputFormat(msgspec.Struct, kw_only=True, tag="json_schema"):
    schema: dict[str, Any]


class _OutputConfig(msgspec.Struct, kw_only=True):
    # Anthropic's structured outputs and effort: chat has both (response_format, reasoning_effort).
    format: _OutputFormat | None = None
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


class MessagesRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/messages``: the fields the translation reads (unknown fields are ignored)."""

    model: _RequestModel
    max_tokens: _MaxTokens
    messages: Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    system: str | list[SystemText] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone | None = None
    stop_sequences: list[str] | None = None
    temperature: _Unit | None = None
    top_p: _Unit | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    metadata: _Metadata | None = None
    stream: bool | None = None
    # Accepted and not forwarded: chat completions has no thinking budget (OpenAI's reasoning_effort is a
    # different knob that most backends reject or ignore); it only decides whether reasoning is returned.
    thinking: _ThinkingConfig | None = None
    output_config: _OutputConfig | None = None


class CountTokensRequest(MessagesRequest, kw_only=True):
    """``POST /v1/messages/count_tokens``: the same body without ``max_tokens``."""

    max_tokens: _MaxTokens | None = None  # type: ignore[assignment]


_decoders = {False: msgspec.json.Decoder(MessagesRequest), True: msgspec.json.Decoder(CountTokensRequest)}
_AT = re.compile(r" - at `\$[^`]*`$")
_BLOCK_TYPE = re.compile(r"^messages\[\d+\]\.content\[\d+\](\.content\[\d+\])?\.type$")
_INVALID_VALUE = re.compile(r"^Invalid value '(?P<value>[^']*)'")
# Anthropic block types that exist but have no chat completions equivalent.
_INEXPRESSIBLE = frozenset({
    "search_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
    "tool_search_tool_result", "mcp_tool_use", "mcp_tool_result", "container_upload", "tool_reference",
    "browser_state",
})


def thinking_enabled(req: MessagesRequest) -> bool:
    """Whether the client asked for thinking, hence for the backend's reasoning as thinking blocks."""
    return req.thinking is not None and req.thinking.type != "disabled"


def parse_request(body: bytes, *, count_tokens: bool = False) -> MessagesRequest:
    """Decode and validate a Messages body (``count_tokens``: the count_tokens body, without ``max_tokens``).

    Raises ``BadRequest`` with ``param`` naming the field for invalid JSON or values, ``unsupported_tool`` for
    Anthropic server tools, and ``unsupported_content`` for content blocks chat completions cannot carry.
    """
    req: MessagesRequest = decode_body(_decoders[count_tokens], body, invalid=_validation_error)
    _check_tools(req)
    for i, message in enumerate(req.messages):
        if not isinstance(message.content, str):
            for j, block in enumerate(message.content):
                _check_block(block, message.role, f"messages[{i}].content[{j}]")
    return req


def _validation_error(message: str) -> BadRequest:
    param = param_of(message)
    clean = _AT.sub("", message)
    value = _INVALID_VALUE.match(message)
    if param and value and _BLOCK_TYPE.match(param):
        kind = value.group("value")
        why = ("has no chat completions equivalent" if kind in _INEXPRESSIBLE
               else "is not a content block type this endpoint knows")
        return BadRequest(f"The content block type '{kind}' at '{param}' {why}; send text, image, document "
                          "(text source), tool_use, tool_result or thinking blocks.",
                          code="unsupported_content", param=param)
    detail = f"Invalid value for '{param}': {clean}" if param else f"Invalid request body: {clean}"
    return BadRequest(detail, param=param)


def _check_tools(req: MessagesRequest) -> None:
    names: set[str] = set()
    for i, tool in enumerate(req.tools or ()):
        if tool.type not in (None, "custom"):
            raise BadRequest(f"The tool type '{tool.type}' at 'tools[{i}].type' is an Anthropic server tool, which "
                             "this gateway cannot run; declare it as a custom tool with an input_schema.",
                             code="unsupported_tool", param=f"tools[{i}].type")
        if not tool.name:
            raise BadRequest(f"Invalid value for 'tools[{i}].name': a custom tool needs a name.",
                             param=f"tools[{i}].name")
        if tool.input_schema is None:
            raise BadRequest(f"Invalid value for 'tools[{i}].input_schema': a custom tool needs an input_schema.",
                             param=f"tools[{i}].input_schema")
        if tool.name in names:
            raise BadRequest(f"Invalid value for 'tools[{i}].name': the tool name '{tool.name}' is used twice.",
                             param=f"tools[{i}].name")
        names.add(tool.name)
    choice = req.tool_choice
    if isinstance(choice, ToolChoiceAny | ToolChoiceTool) and not names:
        raise BadRequest("Invalid value for 'tool_choice.type': it asks for a tool, and the request declares none.",
                         param="tool_choice.type")
    if isinstance(choice, ToolChoiceTool) and choice.name not in names:
        raise BadRequest(f"Invalid value for 'tool_choice.name': no tool is named '{choice.name}'.",
                         param="tool_choice.name")


def _check_block(block: Any, role: str, at: str) -> None:
    if role == "system" and not isinstance(block, TextBlock):
        raise BadRequest(f"The {block.__struct_config__.tag} block at '{at}' is in a system turn, which holds only "
                         "text blocks.", code="unsupported_content", param=f"{at}.type")
    if isinstance(block, ImageBlock | DocumentBlock):
        source = block.source
        if isinstance(source, FileSource) or (isinstance(block, DocumentBlock) and
                                               isinstance(source, Base64Source | UrlSource)):
            what = "a file" if isinstance(source, FileSource) else "a PDF"
            raise BadRequest(f"The {block.__struct_config__.tag} block at '{at}' refers to {what}, which chat "
                             "completions cannot carry; send its text (or the image itself) instead.",
                             code="unsupported_content", param=f"{at}.type")
        if role == "assistant":
            raise BadRequest(f"The {block.__struct_config__.tag} block at '{at}' is in an assistant turn; chat "
                             "completions only takes images and documents from the user.",
                             code="unsupported_content", param=f"{at}.type")
        if isinstance(source, ContentSource) and not isinstance(source.content, str):
            for k, inner in enumerate(source.content):
                _check_block(inner, role, f"{at}.source.content[{k}]")
    elif isinstance(block, ToolUseBlock) and role != "assistant":
        raise BadRequest(f"The tool_use block at '{at}' is in a user turn; tool calls come from the assistant.",
                         code="unsupported_content", param=f"{at}.type")
    elif isinstance(block, ToolResultBlock):
        if role != "user":
            raise BadRequest(f"The tool_result block at '{at}' is in an assistant turn; tool results come from the "
                             "user.", code="unsupported_content", param=f"{at}.type")
        if isinstance(block.content, list):
            for k, inner in enumerate(block.content):
                _check_block(inner, role, f"{at}.content[{k}]")
