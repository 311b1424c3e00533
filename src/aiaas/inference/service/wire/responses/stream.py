"""The chunks of one streamed chat completion as the server-sent events of a streamed Response."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aiaas.inference.service.wire.responses.output import (
    Usage,
    call_item,
    custom_input,
    message_item,
    output_text_part,
    reasoning_delta,
    reasoning_item,
    response_object,
    status_of,
)
from aiaas.inference.service.wire.responses.request import ResponsesRequest

_encode = msgspec.json.encode


@dataclass(slots=True)
class _Open:
    """An output item still receiving deltas: its place in ``output`` and the text of its open part."""

    index: int
    item: dict[str, Any]
    part: str | None = None  # message: "output_text" | "refusal"; reasoning: "reasoning_text"; calls: None
    buffer: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.buffer)


class ResponseStream:
    """Turns the chunks of one streamed chat completion into Responses SSE events, in OpenAI's order.

    One output item is open at a time, as OpenAI streams them: text, reasoning or a tool call; the next
    kind (or the next tool call) closes it. Each event carries the next ``sequence_number`` from 0 and is
    ``b"event: <type>\\ndata: <json>\\n\\n"``. Call :meth:`start`, :meth:`chunk` per chunk, then
    :meth:`finish` (or :meth:`fail`); :attr:`response` is the Response object for storage.
    """

    def __init__(
        self,
        req: ResponsesRequest,
        *,
        response_id: str,
        created_at: int,
        new_id: Callable[[str], str],
        custom_tools: frozenset[str] = frozenset(),
    ) -> None:
        self._req = req
        self._id = response_id
        self._created_at = created_at
        self._new_id = new_id
        self._custom = custom_tools
        self._seq = 0
        self._events: list[bytes] = []
        self._output: list[dict[str, Any]] = []
        self._open: _Open | None = None  # the open message or reasoning item
        self._calls: dict[int, _Open] = {}  # chat tool-call index -> its item
        self._open_call: int | None = None
        self._finish_reason: str | None = None
        self._status = "in_progress"
        self._reason: str | None = None
        self._usage: Usage | None = None
        self._error: dict[str, Any] | None = None
        self._ended = False

    # --- the public steps ---

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        self._emit("response.created", response=self.response)
        self._emit("response.in_progress", response=self.response)
        return self._drain()

    def chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events for one chat chunk (choice 0 only; chunks after the end are ignored)."""
        if self._ended:
            return []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = reasoning_delta(delta)
            if reasoning:
                self._text("reasoning", "reasoning_text", reasoning)
            for part, key in (("output_text", "content"), ("refusal", "refusal")):
                text = delta.get(key)
                if isinstance(text, str) and text:
                    self._text("message", part, text)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return self._drain()

    def finish(self, usage: Usage) -> list[bytes]:
        """Close what is still open, then ``response.completed`` (or ``response.incomplete`` when the
        completion stopped at ``length`` or ``content_filter``) carrying the whole Response."""
        if self._ended:
            return []
        self._status, self._reason = status_of(self._finish_reason)
        last = "completed" if self._status == "completed" else "incomplete"
        self._close_all(last)
        self._usage = usage
        self._ended = True
        self._emit(f"response.{self._status}", response=self.response)
        return self._drain()

    def fail(self, message: str, code: str = "server_error", *, usage: Usage | None = None) -> list[bytes]:
        """``response.failed`` with ``error`` {code, message} and the output so far (open items incomplete).

        ``code`` must be one of OpenAI's Response error codes (``server_error``, ``rate_limit_exceeded``, ...).
        """
        if self._ended:
            return []
        for state in self._opened():
            self._sync(state)
            if "status" in state.item:
                state.item["status"] = "incomplete"
        self._open = None
        self._open_call = None
        self._status = "failed"
        self._error = {"code": code, "message": message}
        self._usage = usage
        self._ended = True
        self._emit("response.failed", response=self.response)
        return self._drain()

    @property
    def response(self) -> dict[str, Any]:
        """The Response object as it stands (final after :meth:`finish` or :meth:`fail`)."""
        for state in self._opened():
            self._sync(state)
        return response_object(self._req, response_id=self._id, created_at=self._created_at, status=self._status,
                               output=copy.deepcopy(self._output), usage=self._usage, error=self._error,
                               incomplete_reason=self._reason)

    # --- events ---

    def _emit(self, kind: str, **fields: Any) -> None:
        data = _encode({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1
        self._events.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _drain(self) -> list[bytes]:
        events, self._events = self._events, []
        return events

    def _add(self, item: dict[str, Any]) -> _Open:
        state = _Open(index=len(self._output), item=item)
        self._output.append(item)
        self._emit("response.output_item.added", output_index=state.index, item=item)
        return state

    def _done(self, state: _Open, status: str) -> None:
        if "status" in state.item:
            state.item["status"] = status
        self._emit("response.output_item.done", output_index=state.index, item=state.item)

    def _opened(self) -> list[_Open]:
        states = [self._open] if self._open is not None else []
        if self._open_call is not None:
            states.append(self._calls[self._open_call])
        return states

    # --- text: message parts and reasoning ---

    def _text(self, kind: str, part: str, delta: str) -> None:
        state = self._open
        if state is None or state.item["type"] != kind:
            self._close_all("completed")
            item_id = self._new_id("msg" if kind == "message" else "rs")
            item = message_item(item_id, [], "in_progress") if kind == "message" else reasoning_item(item_id, None)
            state = self._open = self._add(item)
        if state.part != part:
            self._close_part(state)
            state.part = part
            state.item["content"].append(_empty_part(part))
            self._emit("response.content_part.added", item_id=state.item["id"], output_index=state.index,
                       content_index=len(state.item["content"]) - 1, part=_empty_part(part))
        state.buffer.append(delta)
        where = {"item_id": state.item["id"], "output_index": state.index,
                 "content_index": len(state.item["content"]) - 1}
        if part == "output_text":
            self._emit("response.output_text.delta", **where, delta=delta, logprobs=[])
        elif part == "refusal":
            self._emit("response.refusal.delta", **where, delta=delta)
        else:
            self._emit("response.reasoning_text.delta", **where, delta=delta)

    def _close_part(self, state: _Open) -> None:
        if state.part is None:
            return
        self._sync(state)
        index = len(state.item["content"]) - 1
        done = state.item["content"][index]
        where = {"item_id": state.item["id"], "output_index": state.index, "content_index": index}
        if state.part == "output_text":
            self._emit("response.output_text.done", **where, text=done["text"], logprobs=[])
        elif state.part == "refusal":
            self._emit("response.refusal.done", **where, refusal=done["refusal"])
        else:
            self._emit("response.reasoning_text.done", **where, text=done["text"])
        self._emit("response.content_part.done", **where, part=done)
        state.part = None
        state.buffer = []

    # --- tool calls ---

    def _call_delta(self, call: dict[str, Any]) -> None:
        index = call.get("index")
        fn = call.get("function") or {}
        if not isinstance(index, int):
            # A backend that leaves out the index streams one call at a time: an id or a name starts the next.
            starts = self._open_call is None or call.get("id") or fn.get("name")
            index = len(self._calls) if starts else self._open_call
        state = self._calls.get(index)
        if state is None:
            self._close_all("completed")
            name = fn.get("name") or ""
            custom = name in self._custom
            item = call_item(item_id=self._new_id("ctc" if custom else "fc"), call_id=call.get("id") or
                             self._new_id("call"), name=name, arguments="", custom=custom, status="in_progress")
            state = self._calls[index] = self._add(item)
            self._open_call = index
        fragment = fn.get("arguments")
        if not isinstance(fragment, str) or not fragment:
            return
        state.buffer.append(fragment)
        # A custom tool's input is the string inside the JSON the backend streams; it is sent whole at the
        # end rather than decoded from partial JSON.
        if index != self._open_call:  # a late fragment of a call already closed: the stored item keeps it
            self._sync(state)
        elif state.item["type"] == "function_call":
            self._emit("response.function_call_arguments.delta", item_id=state.item["id"],
                       output_index=state.index, delta=fragment)

    def _close_call(self, status: str) -> None:
        if self._open_call is None:
            return
        state = self._calls[self._open_call]
        self._open_call = None
        self._sync(state)
        item = state.item
        where = {"item_id": item["id"], "output_index": state.index}
        if item["type"] == "function_call":
            self._emit("response.function_call_arguments.done", **where, name=item["name"],
                       arguments=item["arguments"])
        else:
            if item["input"]:
                self._emit("response.custom_tool_call_input.delta", **where, delta=item["input"])
            self._emit("response.custom_tool_call_input.done", **where, input=item["input"])
        self._done(state, status)

    # --- closing ---

    def _close_all(self, status: str) -> None:
        if self._open is not None:
            self._close_part(self._open)
            self._done(self._open, status)
            self._open = None
        self._close_call(status)

    def _sync(self, state: _Open) -> None:
        """Write the buffered text into the item (arguments of a call, or the open content part)."""
        item = state.item
        if item["type"] == "function_call":
            item["arguments"] = state.text
        elif item["type"] == "custom_tool_call":
            item["input"] = custom_input(state.text) if state.buffer else ""
        elif state.part is not None:
            item["content"][-1]["refusal" if state.part == "refusal" else "text"] = state.text


def _empty_part(part: str) -> dict[str, Any]:
    if part == "output_text":
        return output_text_part("")
    if part == "refusal":
        return {"type": "refusal", "refusal": ""}
    return {"type": "reasoning_text", "text": ""}
