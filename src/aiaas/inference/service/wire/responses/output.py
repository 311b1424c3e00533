"""The Response object, its usage, and a whole chat completion as Response output items."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from aiaas.inference.service.wire.responses.request import ResponsesRequest

_DEFAULT_TEXT = {"format": {"type": "text"}}
# Chat finish reasons that end a response early, and the incomplete_details.reason OpenAI gives for them.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one response, as the gateway metered them (never recomputed here)."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The Response ``usage`` object."""
        return {
            "input_tokens": self.input_tokens,
            # cache_write_tokens: the SDK's type requires it; a chat backend's usage has no such count.
            "input_tokens_details": {"cached_tokens": self.cached_tokens,
                                     "cache_write_tokens": self.cache_write_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def response_object(
    req: ResponsesRequest,
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    error: dict[str, Any] | None = None,
    incomplete_reason: str | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The Response object (``object: "response"``) for ``req``, echoing the request's settings.

    ``status`` is ``in_progress``, ``completed``, ``incomplete`` (with ``incomplete_reason``) or ``failed``
    (with ``error``: ``{"code", "message"}``); ``usage`` is None while in progress.
    """
    reasoning = req.reasoning
    text = msgspec.to_builtins(req.text) if req.text is not None else {}
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": completed_at if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "metadata": dict(req.metadata or {}),
        "model": req.model,
        "output": list(output),
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": req.prompt_cache_key,
        "reasoning": {"effort": reasoning.effort if reasoning else None,
                      "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None},
        "safety_identifier": req.safety_identifier,
        "store": req.store,
        "temperature": req.temperature,
        "text": {**_DEFAULT_TEXT, **text},
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": list(req.tools or ()),
        "top_p": req.top_p,
        "truncation": "disabled",
    }
    # OpenAI's published document has these two optional, not nullable: left out until they are known.
    if usage is not None:
        response["usage"] = usage.as_dict()
    if req.user is not None:
        response["user"] = req.user
    return response


def status_of(finish_reason: str | None) -> tuple[str, str | None]:
    """(status, incomplete reason) of a response whose completion ended with ``finish_reason``."""
    reason = _INCOMPLETE.get(finish_reason or "")
    return ("incomplete", reason) if reason else ("completed", None)


def output_text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """An assistant ``message`` output item."""
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def reasoning_item(item_id: str, text: str | None) -> dict[str, Any]:
    """A ``reasoning`` output item carrying the backend's reasoning text (None: not started yet)."""
    content = [] if text is None else [{"type": "reasoning_text", "text": text}]
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content}


def custom_input(arguments: str) -> str:
    """The free-text input of a custom tool call from the JSON arguments the chat backend produced."""
    try:
        parsed = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        parsed = None
    # A model that ignored the one-string-argument schema still said something: pass its text on as is.
    if isinstance(parsed, dict) and isinstance(parsed.get("input"), str):
        return parsed["input"]
    return arguments


def call_item(
    *, item_id: str, call_id: str, name: str, arguments: str, custom: bool, status: str
) -> dict[str, Any]:
    """A ``function_call`` (or, for a custom tool, ``custom_tool_call``) output item."""
    if custom:
        return {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": name,
                "input": custom_input(arguments)}
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def output_of_completion(
    chat: dict[str, Any], *, new_id: Callable[[str], str], custom_tools: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], str, str | None]:
    """A whole chat completion's choice 0 as Response output items, plus (status, incomplete reason).

    The items: a ``reasoning`` item for the backend's reasoning text, a ``message`` with the ``output_text``
    (and ``refusal``), then one ``function_call`` or ``custom_tool_call`` (names in ``custom_tools``) per call.
    ``stop``/``tool_calls`` complete the response; ``length`` and ``content_filter`` leave it incomplete.
    """
    choices = chat.get("choices") or []
    choice = next((c for c in choices if c.get("index", 0) == 0), choices[0] if choices else {})
    message = choice.get("message") or {}
    status, reason = status_of(choice.get("finish_reason"))
    item_status = "completed" if status == "completed" else "incomplete"
    output: list[dict[str, Any]] = []
    reasoning = reasoning_delta(message)
    if reasoning:
        output.append(reasoning_item(new_id("rs"), reasoning))
    content = message.get("content")
    if isinstance(content, list):  # a few backends answer with content parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    parts = [output_text_part(content)] if isinstance(content, str) and content else []
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(message_item(new_id("msg"), parts, item_status))
    calls = list(message.get("tool_calls") or ())
    if message.get("function_call"):  # the legacy single-call form
        calls.append({"function": message["function_call"]})
    for call in calls:
        fn = call.get("function") or {}
        name = fn.get("name") or ""
        custom = name in custom_tools
        output.append(call_item(item_id=new_id("ctc" if custom else "fc"), call_id=call.get("id") or new_id("call"),
                                name=name, arguments=fn.get("arguments") or "", custom=custom, status=item_status))
    return output, status, reason


def reasoning_delta(message: dict[str, Any]) -> str | None:
    """The reasoning text of a chat message or delta (vLLM and llama.cpp: ``reasoning_content``; newer vLLM:
    ``reasoning``)."""
    text = message.get("reasoning_content") or message.get("reasoning")
    return text if isinstance(text, str) and text else None
