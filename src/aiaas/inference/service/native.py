"""Metering a response that a deployment gave in the client's own wire format (``Deployment.native_apis``).

A passed-through Responses or Messages answer is relayed as the upstream's bytes, like chat's; this
:class:`NativeTally` reads its usage and how it ended from that format's own fields instead of chat's, so
the completion event, limits and quotas are settled exactly as for a translated request:

- Responses API: ``usage`` of the Response object (whole, or in ``response.completed`` /
  ``response.incomplete`` / ``response.failed``), ``input_tokens`` including the cached ones;
- Messages API: ``usage`` of the Message (whole, or ``message_start`` then ``message_delta``), where
  ``input_tokens`` excludes cache reads and writes, so the prompt is the three summed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aiaas.inference.service.calls import Tally

_decode = msgspec.json.decode
_RESPONSES_ENDS = {"response.completed": "stop", "response.incomplete": "length", "response.failed": None}
_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                     "response.reasoning_text.delta", "response.custom_tool_call_input.delta",
                     "content_block_delta"})
_STOP = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
         "refusal": "content_filter", "pause_turn": "stop"}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _data(event: bytes) -> dict[str, Any] | None:
    """The JSON of an SSE event's ``data:`` line (``event:`` lines and comments around it are skipped)."""
    if event.startswith(b"data:"):
        at = 0
    else:
        found = event.find(b"\ndata:")
        if found < 0:
            return None
        at = found + 1
    end = event.find(b"\n", at)
    payload = event[at + 5:end if end >= 0 else None].strip()
    try:
        doc = _decode(payload)
    except msgspec.DecodeError:
        return None
    return doc if isinstance(doc, dict) else None


class NativeTally(Tally):
    """Counts a passed-through answer of the Responses (``api="responses"``) or Messages API."""

    __slots__ = ("api", "final", "last_sequence")

    def __init__(self, api: str) -> None:
        super().__init__()
        self.api = api
        self.final: dict[str, Any] | None = None  # the Responses API's final Response object
        self.last_sequence = -1

    def _responses_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.usage_given = True
        self.prompt_tokens = _int(usage.get("input_tokens"))
        self.completion_tokens = _int(usage.get("output_tokens"))
        details = usage.get("input_tokens_details") or {}
        out_details = usage.get("output_tokens_details") or {}
        self.cached_prompt_tokens = min(_int(details.get("cached_tokens")), self.prompt_tokens)
        self.reasoning_tokens = min(_int(out_details.get("reasoning_tokens")), self.completion_tokens)

    def _messages_usage(self, usage: Any, *, final: bool) -> None:
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage or not final:
            cached = _int(usage.get("cache_read_input_tokens"))
            written = _int(usage.get("cache_creation_input_tokens"))
            self.prompt_tokens = _int(usage.get("input_tokens")) + cached + written
            self.cached_prompt_tokens = cached
        if "output_tokens" in usage:
            self.completion_tokens = _int(usage.get("output_tokens"))
        if final:
            self.usage_given = True

    def body(self, body: bytes) -> None:
        """Usage and how it ended, from a whole Response or Message."""
        try:
            doc = _decode(body)
        except msgspec.DecodeError:
            return
        if not isinstance(doc, dict):
            return
        if self.api == "responses":
            self._responses_usage(doc.get("usage"))
            self.finish_reason = {"completed": "stop", "incomplete": "length"}.get(doc.get("status") or "")
            self.final = doc
        else:
            self._messages_usage(doc.get("usage"), final=True)
            self.finish_reason = _STOP.get(doc.get("stop_reason") or "")

    def event(self, event: bytes, wants_usage: bool) -> bytes | None:
        """Account one event of the format's stream; every event is passed on as it came."""
        doc = _data(event)
        if doc is None:
            return event
        kind = doc.get("type")
        if isinstance(doc.get("sequence_number"), int):
            self.last_sequence = doc["sequence_number"]
        if kind in _DELTAS:
            self.chunks += 1
        elif kind == "error":
            self.stream_error = True
        elif self.api == "responses" and kind in _RESPONSES_ENDS:
            response = doc.get("response") if isinstance(doc.get("response"), dict) else {}
            self._responses_usage(response.get("usage"))
            self.finish_reason = _RESPONSES_ENDS[kind]
            self.saw_done = True
            if kind == "response.failed":
                self.stream_error = True
            else:
                self.final = response
        elif kind == "message_start":
            message = doc.get("message") if isinstance(doc.get("message"), dict) else {}
            self._messages_usage(message.get("usage"), final=False)
        elif kind == "message_delta":
            self._messages_usage(doc.get("usage"), final=True)
            delta = doc.get("delta") if isinstance(doc.get("delta"), dict) else {}
            self.finish_reason = _STOP.get(delta.get("stop_reason") or "", self.finish_reason)
        elif kind == "message_stop":
            self.saw_done = True
        return event
