"""Metering of answers a deployment gave in the Responses or Messages API's own format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiaas.inference.service.native import NativeTally


def ev(kind: str, **doc: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **doc})}\n\n".encode()


USAGE = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 4,
         "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}


class TestResponses:
    def test_a_whole_response(self) -> None:
        t = NativeTally("responses")
        t.body(json.dumps({"id": "resp_1", "status": "incomplete", "usage": USAGE}).encode())
        o = t.outcome(status="ok")
        assert (o.prompt_tokens, o.completion_tokens, o.cached_prompt_tokens, o.reasoning_tokens) == (9, 4, 3, 1)
        assert o.finish_reason == "length" and t.final is not None and t.final["id"] == "resp_1"

    def test_a_stream_ends_with_the_completed_response(self) -> None:
        t = NativeTally("responses")
        events = [ev("response.created", sequence_number=0, response={"usage": None}),
                  ev("response.output_text.delta", sequence_number=1, delta="Hi"),
                  ev("response.completed", sequence_number=2, response={"id": "resp_2", "usage": USAGE})]
        for e in events:
            assert t.event(e, True) == e  # passed on as it came
        o = t.outcome(status="ok", stream=True)
        assert (o.prompt_tokens, o.completion_tokens, o.finish_reason, o.status) == (9, 4, "stop", "ok")
        assert t.saw_done and t.last_sequence == 2 and t.final == {"id": "resp_2", "usage": USAGE}

    def test_a_failed_response_is_an_error(self) -> None:
        t = NativeTally("responses")
        t.event(ev("response.failed", sequence_number=5, response={"status": "failed"}), True)
        assert t.outcome(status="ok", stream=True).status == "error"
        assert t.final is None

    def test_without_usage_each_delta_counts_a_token(self) -> None:
        t = NativeTally("responses")
        for i in range(3):
            t.event(ev("response.output_text.delta", sequence_number=i, delta="x"), True)
        assert t.outcome(status="ok", stream=True).completion_tokens == 3

    @pytest.mark.parametrize("usage", [{"input_tokens": -5, "output_tokens": True}, {"input_tokens": "9"}, []])
    def test_nonsense_counts_count_nothing(self, usage: Any) -> None:
        t = NativeTally("responses")
        t.body(json.dumps({"status": "completed", "usage": usage}).encode())
        o = t.outcome(status="ok")
        assert (o.prompt_tokens, o.completion_tokens) == (0, 0)

    def test_a_detail_never_exceeds_its_count(self) -> None:
        t = NativeTally("responses")
        t.body(json.dumps({"usage": {"input_tokens": 2, "input_tokens_details": {"cached_tokens": 50},
                                     "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 9}}}).encode())
        o = t.outcome(status="ok")
        assert (o.cached_prompt_tokens, o.reasoning_tokens) == (2, 1)


class TestMessages:
    def test_a_whole_message_counts_cache_reads_in_the_prompt(self) -> None:
        t = NativeTally("messages")
        t.body(json.dumps({"stop_reason": "tool_use", "usage": {
            "input_tokens": 5, "cache_read_input_tokens": 2, "cache_creation_input_tokens": 1,
            "output_tokens": 4}}).encode())
        o = t.outcome(status="ok")
        assert (o.prompt_tokens, o.cached_prompt_tokens, o.completion_tokens) == (8, 2, 4)
        assert o.finish_reason == "tool_calls"

    def test_a_stream_takes_input_from_the_start_and_output_from_the_delta(self) -> None:
        t = NativeTally("messages")
        for e in [ev("message_start", message={"usage": {"input_tokens": 5, "cache_read_input_tokens": 2,
                                                         "output_tokens": 1}}),
                  ev("ping"),
                  ev("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"}),
                  ev("message_delta", delta={"stop_reason": "max_tokens"}, usage={"output_tokens": 7}),
                  ev("message_stop")]:
            t.event(e, True)
        o = t.outcome(status="ok", stream=True)
        assert (o.prompt_tokens, o.cached_prompt_tokens, o.completion_tokens) == (7, 2, 7)
        assert o.finish_reason == "length" and t.saw_done

    def test_a_final_delta_with_input_tokens_replaces_the_start(self) -> None:
        t = NativeTally("messages")
        t.event(ev("message_start", message={"usage": {"input_tokens": 1}}), True)
        t.event(ev("message_delta", delta={}, usage={"input_tokens": 6, "output_tokens": 2}), True)
        assert t.outcome(status="ok", stream=True).prompt_tokens == 6

    def test_an_error_event_is_an_error(self) -> None:
        t = NativeTally("messages")
        t.event(ev("error", error={"type": "overloaded_error", "message": "busy"}), True)
        assert t.outcome(status="ok", stream=True).status == "error"

    @pytest.mark.parametrize("event", [b": comment\n\n", b"event: x\n\n", b"data: not json\n\n", b"data: [1]\n\n"])
    def test_what_is_not_an_event_passes_untouched(self, event: bytes) -> None:
        t = NativeTally("messages")
        assert t.event(event, True) == event
        t.body(b"not json")
        t.body(b"[]")
        assert t.outcome(status="ok").prompt_tokens == 0
