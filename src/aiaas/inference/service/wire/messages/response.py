"""Chat completions answers as Anthropic Messages: the whole Message, and the SSE event stream."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from aiaas.inference.service.wire.messages.request import MessagesRequest, thinking_enabled

__all__ = ["MessageStream", "Usage", "message_of_completion", "stop_reason_of", "tool_input"]

_encode = msgspec.json.encode


@dataclass(frozen=True)
class Usage:
    """The final token counts, as the gateway metered them."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0


def stop_reason_of(finish_reason: str | None, chat_stop_reason: Any, stop_sequences: Sequence[str] | None, *,
                   tool_use: bool = False) -> tuple[str, str | None]:
    """Anthropic's ``(stop_reason, stop_sequence)`` for a chat ``finish_reason`` (and vLLM's ``stop_reason``).

    ``tool_use`` (the answer holds tool calls) wins over a plain stop: some backends finish a tool call with
    ``stop``, and Anthropic clients run tools only on ``tool_use``.
    """
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason == "content_filter":
        return "refusal", None
    if tool_use or finish_reason in ("tool_calls", "function_call"):
        return "tool_use", None
    if isinstance(chat_stop_reason, str) and chat_stop_reason in (stop_sequences or ()):
        return "stop_sequence", chat_stop_reason
    return "end_turn", None


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as Anthropic's ``input`` object.

    Empty arguments are ``{}``. Arguments that are not a JSON object (a small model's broken JSON, or JSON
    cut off at max_tokens) are wrapped as ``{"_raw_arguments": text}`` rather than failing the answer with a
    502: the text and the other tool calls stay usable, the client's input validation rejects the call and
    tells the model, which can retry, and no SDK ever sees invalid JSON.
    """
    if isinstance(arguments, dict):  # some backends (Ollama) send the object itself
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": text}


def _tool_id(value: Any) -> str:
    return value if isinstance(value, str) and value else f"toolu_{uuid.uuid4().hex[:24]}"


def _text_of(content: Any) -> str:
    # Content is a string; a few proxies answer with a list of text parts.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


def _choice0(choices: Any) -> dict[str, Any]:
    for choice in choices or ():
        if isinstance(choice, dict) and (choice.get("index") or 0) == 0:
            return choice
    return {}


def _reasoning(d: dict[str, Any]) -> str:
    # vLLM renamed reasoning_content to reasoning; llama.cpp and older vLLM use reasoning_content.
    value = d.get("reasoning_content") or d.get("reasoning")
    return value if isinstance(value, str) else ""


def _usage(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens, "cache_creation_input_tokens": 0}


def message_of_completion(chat: dict[str, Any], req: MessagesRequest, *, message_id: str, model: str,
                          usage: Usage) -> dict[str, Any]:
    """Choice 0 of a whole chat completion as an Anthropic ``Message`` (``model`` as the client named it).

    The backend's reasoning becomes a leading thinking block when the client enabled thinking, with an
    empty signature (see ``MessageStream``).
    """
    choice = _choice0(chat.get("choices"))
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if reasoning and thinking_enabled(req):
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text_of(message.get("content"))
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else ""
    if text or refusal:
        content.append({"type": "text", "text": text or refusal})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append({"type": "tool_use", "id": _tool_id(call.get("id")), "name": function.get("name") or "",
                            "input": tool_input(function.get("arguments"))})
    stop_reason, stop_sequence = stop_reason_of(choice.get("finish_reason"), choice.get("stop_reason"),
                                                req.stop_sequences,
                                                tool_use=any(b["type"] == "tool_use" for b in content))
    if refusal and not text and stop_reason == "end_turn":
        stop_reason = "refusal"
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": _usage(usage)}


def _object_json(text: str) -> str | None:
    try:
        return text if isinstance(json.loads(text), dict) else None
    except ValueError:
        return None


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encode(data) + b"\n\n"


class MessageStream:
    """The Anthropic SSE events of one streamed chat completion, block by block in Anthropic's order.

    Tool call arguments are held until the call ends and sent as one ``input_json_delta``: a backend's
    fragments may add up to invalid JSON, which Anthropic never sends and the SDKs' accumulators fail on,
    so they go out only once checked (``tool_input``). Reasoning becomes a thinking block when the client
    enabled thinking; its signature is empty, since only Anthropic can sign, and a client that sends the
    block back loses nothing because requests drop thinking blocks.
    """

    def __init__(self, req: MessagesRequest, *, message_id: str, model: str, estimated_input_tokens: int) -> None:
        self._req = req
        self._message_id = message_id
        self._model = model
        self._estimated = estimated_input_tokens
        self._thinking = thinking_enabled(req)
        self._index = -1  # Anthropic index of the last block started
        self._open: str | None = None  # type of the open block
        self._tool: dict[str, Any] | None = None  # the open (or not yet started) tool call
        self._seen_tools: set[int] = set()
        self._tool_use = False
        self._refusal = False
        self._finish_reason: str | None = None
        self._chat_stop_reason: Any = None

    def start(self) -> list[bytes]:
        """``message_start`` (empty content, the estimated input tokens) and a ``ping``."""
        message = {"id": self._message_id, "type": "message", "role": "assistant", "model": self._model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self._estimated, "output_tokens": 0}}
        return [_event("message_start", {"type": "message_start", "message": message}),
                _event("ping", {"type": "ping"})]

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events for one chat chunk (only choice 0 counts; a usage-only chunk gives none)."""
        choice = _choice0(chunk.get("choices"))
        delta = choice.get("delta") or {}
        out: list[bytes] = []
        reasoning = _reasoning(delta)
        if reasoning and self._thinking:
            out += self._delta("thinking", {"type": "thinking_delta", "thinking": reasoning})
        text = _text_of(delta.get("content"))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refusal = True
            text += refusal
        if text:
            out += self._delta("text", {"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                out += self._tool_call(call)
        if choice.get("finish_reason"):
            self._finish_reason = choice["finish_reason"]
            self._chat_stop_reason = choice.get("stop_reason")
        return out

    def finish(self, usage: Usage) -> list[bytes]:
        """Close the open block, then ``message_delta`` (stop reason, the final exact usage) and ``message_stop``."""
        out = self._close()
        stop_reason, stop_sequence = stop_reason_of(self._finish_reason, self._chat_stop_reason,
                                                    self._req.stop_sequences, tool_use=self._tool_use)
        if self._refusal and stop_reason == "end_turn":
            stop_reason = "refusal"
        out.append(_event("message_delta", {"type": "message_delta",
                                            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                            "usage": _usage(usage)}))
        out.append(_event("message_stop", {"type": "message_stop"}))
        return out

    def fail(self, message: str, error_type: str = "api_error") -> list[bytes]:
        """An ``error`` event; Anthropic ends a failed stream with it and closes nothing."""
        return [_event("error", {"type": "error", "error": {"type": error_type, "message": message}})]

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        self._index += 1
        self._open = kind
        return _event("content_block_start", {"type": "content_block_start", "index": self._index,
                                              "content_block": block})

    def _delta(self, kind: str, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if self._open != kind:
            out += self._close()
            empty = {"type": "text", "text": ""} if kind == "text" else {"type": kind, "thinking": "", "signature": ""}
            out.append(self._start(kind, empty))
        out.append(_event("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                  "delta": delta}))
        return out

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index") if isinstance(call.get("index"), int) else 0
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        tool = self._tool
        # A new id under the same index is a new call too: some OpenAI-compatible servers send every call
        # whole, each with index 0 (or none); others repeat the id on every fragment.
        if tool is None or tool["index"] != index or (call_id is not None and call_id != tool["id"]):
            if call_id is None and index in self._seen_tools:
                return out  # a late fragment of a call already closed: backends stream calls one after another
            out += self._close()
            self._seen_tools.add(index)
            self._tool_use = True
            tool = self._tool = {"index": index, "id": _tool_id(call_id), "name": "", "arguments": "",
                                 "started": False}
        if not tool["started"] and isinstance(function.get("name"), str):
            tool["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            tool["arguments"] += function["arguments"]
        if not tool["started"] and tool["name"]:
            out.append(self._start_tool(tool))
        return out

    def _start_tool(self, tool: dict[str, Any]) -> bytes:
        tool["started"] = True
        return self._start("tool_use", {"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": {}})

    def _close(self) -> list[bytes]:
        out: list[bytes] = []
        tool, self._tool = self._tool, None
        if tool is not None:
            if not tool["started"]:
                out.append(self._start_tool(tool))
            # The model's own bytes when they are a JSON object, else the checked replacement.
            partial = _object_json(tool["arguments"]) or _encode(tool_input(tool["arguments"])).decode()
            out.append(_event("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                      "delta": {"type": "input_json_delta", "partial_json": partial}}))
        elif self._open == "thinking":
            out.append(_event("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                                      "delta": {"type": "signature_delta", "signature": ""}}))
        if self._open is not None:
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": self._index}))
            self._open = None
        return out
