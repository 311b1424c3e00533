"""The body of ``POST /v1/responses``: decoding and validation (refusing what chat completions cannot express)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from aiaas.inference.schemas import MAX_TOKENS_LIMIT, _RequestModel
from aiaas.inference.service.requests import decode_body, param_of
from aiaas.kernel.errors import BadRequest

_Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
_Summary = Literal["auto", "concise", "detailed"]
_Status = Literal["in_progress", "completed", "incomplete"]
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_T = TypeVar("_T")


class ReasoningConfig(msgspec.Struct, kw_only=True):
    """``reasoning``: only ``effort`` reaches the backend (as ``reasoning_effort``)."""

    effort: _Effort | None = None
    summary: _Summary | None = None
    generate_summary: _Summary | None = None  # the older name of ``summary``


class FormatText(msgspec.Struct, tag_field="type", tag="text"):
    """``text.format`` of plain text (the default)."""


class FormatJsonObject(msgspec.Struct, tag_field="type", tag="json_object"):
    """``text.format`` of any JSON object."""


class FormatJsonSchema(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="type", tag="json_schema"):
    """``text.format`` of JSON matching a schema (structured outputs)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    schema: dict[str, Any]
    strict: bool | None = None
    description: str | None = None


class TextConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``text``: the output format, and the verbosity some models take."""

    format: FormatText | FormatJsonObject | FormatJsonSchema | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


_Metadata = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=64)], Annotated[str, msgspec.Meta(max_length=512)]],
    msgspec.Meta(max_length=16),
]


class ResponsesRequest(msgspec.Struct, kw_only=True):
    """The validated body of ``POST /v1/responses``.

    ``input``, ``tools`` and ``tool_choice`` stay the client's JSON (dicts), checked item by item by
    :func:`parse_request`: they are echoed back as given, and the edge stores them.
    """

    model: _RequestModel
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    reasoning: ReasoningConfig | None = None
    metadata: _Metadata | None = None
    store: bool = True
    previous_response_id: str | None = None
    stream: bool | None = None
    user: str | None = None
    # Accepted for compatibility; nothing in a chat completion answers to them, so they are not forwarded.
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    background: bool | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    # Forwarded: chat completions take the same hints.
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Refused when set: ignoring them would silently answer a different question.
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None


# --- the shapes of input items and content parts (dispatched on ``type`` by hand, for clear errors) ---


class _Message(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[dict[str, Any]]
    id: str | None = None
    status: _Status | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class _FunctionCall(msgspec.Struct, kw_only=True):
    call_id: _NonEmpty
    name: _NonEmpty
    arguments: str
    id: str | None = None
    status: _Status | None = None


class _CustomToolCall(msgspec.Struct, kw_only=True):
    call_id: _NonEmpty
    name: _NonEmpty
    input: str
    id: str | None = None


class _CallOutput(msgspec.Struct, kw_only=True):
    call_id: _NonEmpty
    output: str | list[dict[str, Any]]
    id: str | None = None


class _SummaryText(msgspec.Struct, kw_only=True):
    text: str
    type: Literal["summary_text"] = "summary_text"


class _ReasoningText(msgspec.Struct, kw_only=True):
    text: str
    type: Literal["reasoning_text"] = "reasoning_text"


class _Reasoning(msgspec.Struct, kw_only=True):
    summary: list[_SummaryText] = []
    content: list[_ReasoningText] | None = None
    encrypted_content: str | None = None
    id: str | None = None


class _Text(msgspec.Struct, kw_only=True):
    text: str


class _Image(msgspec.Struct, kw_only=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] | None = None


class _File(msgspec.Struct, kw_only=True):
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class _Refusal(msgspec.Struct, kw_only=True):
    refusal: str


class _FunctionTool(msgspec.Struct, kw_only=True):
    name: _NonEmpty
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class _Grammar(msgspec.Struct, kw_only=True, tag_field="type", tag="grammar"):
    definition: str
    syntax: Literal["lark", "regex"]


class _CustomTool(msgspec.Struct, kw_only=True):
    name: _NonEmpty
    description: str | None = None
    format: FormatText | _Grammar | None = None


class _NamedChoice(msgspec.Struct, kw_only=True):
    type: Literal["function", "custom"]
    name: _NonEmpty


class _AllowedTools(msgspec.Struct, kw_only=True):
    mode: Literal["auto", "required"]
    tools: list[_NamedChoice]


# Item types of OpenAI's hosted tools: replaying one needs the tool, which the gateway does not run.
_BUILT_IN_ITEMS = frozenset({
    "file_search_call", "web_search_call", "computer_call", "computer_call_output", "code_interpreter_call",
    "image_generation_call", "local_shell_call", "local_shell_call_output", "shell_call", "shell_call_output",
    "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output", "additional_tools",
    "program", "program_output",
})
_TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})
_decoder = msgspec.json.Decoder(ResponsesRequest)


def _invalid(message: str, prefix: str = "") -> BadRequest:
    sub = param_of(message)
    param = f"{prefix}.{sub}" if prefix and sub else prefix or sub
    reason = message.split(" - at `", 1)[0]
    detail = f"Invalid value for '{param}': {reason}" if param else f"Invalid request body: {reason}"
    return BadRequest(detail, code="invalid_value", param=param)


def _convert(obj: Any, typ: type[_T], prefix: str) -> _T:
    try:
        return msgspec.convert(obj, typ)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), prefix) from None


def parse_request(body: bytes) -> ResponsesRequest:
    """Decode and validate a Responses request; ``BadRequest`` (400, ``param`` set) on anything invalid.

    Refused as well, because a chat completion cannot express them: OpenAI's built-in tools (``web_search``,
    ``file_search``, ``computer_use``, ``code_interpreter``, ``image_generation``, ``mcp``, ``local_shell``,
    ...), files and images by ``file_id``, ``item_reference`` items and replayed built-in tool calls.
    """
    req = decode_body(_decoder, body, invalid=_invalid)
    for name in ("conversation", "prompt"):
        if getattr(req, name) is not None:
            raise BadRequest(f"'{name}' is not supported by this gateway; send the input itself "
                             "(previous_response_id chains stored responses).", code="unsupported_parameter",
                             param=name)
    kinds = _check_tools(req.tools or [])
    _check_tool_choice(req.tool_choice, kinds)
    if isinstance(req.input, list):
        for i, item in enumerate(req.input):
            _check_item(item, f"input[{i}]")
    return req


def custom_tool_names(req: ResponsesRequest) -> frozenset[str]:
    """The names of the request's ``custom`` tools (their calls come back as ``custom_tool_call`` items)."""
    return frozenset(t["name"] for t in req.tools or () if t.get("type") == "custom")


def _check_tools(tools: list[dict[str, Any]]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "function":
            name = _convert(tool, _FunctionTool, f"tools[{i}]").name
        elif kind == "custom":
            name = _convert(tool, _CustomTool, f"tools[{i}]").name
        else:
            raise BadRequest(f"The tool type '{kind}' of tools[{i}] is not supported: this gateway runs models "
                             "through chat completions and cannot run OpenAI's built-in tools; use 'function' "
                             "or 'custom' tools.", code="unsupported_tool", param=f"tools[{i}].type")
        if name in kinds:
            raise BadRequest(f"tools[{i}] repeats the tool name '{name}'; tool names must be unique.",
                             code="duplicate_tool_name", param=f"tools[{i}].name")
        kinds[name] = kind
    return kinds


def _check_tool_choice(choice: str | dict[str, Any] | None, kinds: dict[str, str]) -> None:
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_MODES:
            raise BadRequest(f"Invalid value for 'tool_choice': '{choice}'; use 'auto', 'none' or 'required'.",
                             code="invalid_value", param="tool_choice")
        return
    kind = choice.get("type")
    if kind in ("function", "custom"):
        named = [(_convert(choice, _NamedChoice, "tool_choice"), "tool_choice.name")]
    elif kind == "allowed_tools":
        allowed = _convert(choice, _AllowedTools, "tool_choice")
        named = [(t, f"tool_choice.tools[{i}].name") for i, t in enumerate(allowed.tools)]
    else:
        raise BadRequest(f"The tool_choice type '{kind}' is not supported: only 'function', 'custom' and "
                         "'allowed_tools' choices (or 'auto', 'none', 'required') are.",
                         code="unsupported_tool_choice", param="tool_choice.type")
    for pick, param in named:
        if kinds.get(pick.name) != pick.type:
            raise BadRequest(f"tool_choice names the {pick.type} tool '{pick.name}', which is not in 'tools'.",
                             code="unknown_tool", param=param)


def _check_item(item: dict[str, Any], at: str) -> None:
    kind = item.get("type")
    if kind is None and "role" in item:
        kind = "message"
    if kind == "message":
        msg = _convert(item, _Message, at)
        if isinstance(msg.content, list):
            for j, part in enumerate(msg.content):
                _check_part(part, f"{at}.content[{j}]", assistant=msg.role == "assistant")
    elif kind == "function_call":
        _convert(item, _FunctionCall, at)
    elif kind == "custom_tool_call":
        _convert(item, _CustomToolCall, at)
    elif kind in ("function_call_output", "custom_tool_call_output"):
        out = _convert(item, _CallOutput, at)
        if isinstance(out.output, list):
            for j, part in enumerate(out.output):
                _check_part(part, f"{at}.output[{j}]", assistant=False)
    elif kind == "reasoning":
        _convert(item, _Reasoning, at)
    elif kind == "item_reference":
        raise BadRequest(f"{at} is an item_reference, which this gateway cannot resolve; send the item itself, "
                         "or chain a stored response with previous_response_id.",
                         code="unsupported_input_item", param=f"{at}.type")
    elif kind in _BUILT_IN_ITEMS:
        raise BadRequest(f"{at} is a '{kind}' item of an OpenAI built-in tool, which this gateway does not run, "
                         "so it cannot be replayed to the model.", code="unsupported_input_item", param=f"{at}.type")
    else:
        raise BadRequest(f"{at} has the unknown or unsupported item type '{kind}'.",
                         code="unsupported_input_item", param=f"{at}.type")


def _check_part(part: dict[str, Any], at: str, *, assistant: bool) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if assistant:
        if kind in ("output_text", "input_text"):
            _convert(part, _Text, at)
        elif kind == "refusal":
            _convert(part, _Refusal, at)
        else:
            raise BadRequest(f"{at} is a '{kind}' part; an assistant message carries only 'output_text' and "
                             "'refusal' parts.", code="unsupported_content", param=f"{at}.type")
        return
    if kind == "input_text":
        _convert(part, _Text, at)
    elif kind == "input_image":
        image = _convert(part, _Image, at)
        if image.image_url is None:
            raise BadRequest(f"{at} gives no image_url: images by file_id are not supported here; send the image "
                             "as a URL or a data URL.", code="unsupported_file_id", param=f"{at}.image_url")
    elif kind == "input_file":
        file = _convert(part, _File, at)
        if file.file_data is None:
            raise BadRequest(f"{at} gives no file_data: files by file_id or file_url are not supported here; send "
                             "the file inline as file_data.", code="unsupported_file_id", param=f"{at}.file_data")
    else:
        raise BadRequest(f"{at} is a '{kind}' part; input messages carry 'input_text', 'input_image' and "
                         "'input_file' parts.", code="unsupported_content", param=f"{at}.type")
