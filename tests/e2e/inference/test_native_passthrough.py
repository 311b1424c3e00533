"""Deployments that speak the Responses or Messages API themselves (``native_apis``): requests pass through
untranslated, answers come back as the upstream's bytes, and they are metered and stored as translated ones."""

from __future__ import annotations

import json
import uuid

import anthropic
import httpx
import openai
import pytest

from e2e.inference.conftest import Running, with_thread
from fake_native import MESSAGES_USAGE, NATIVE_TEXT, RESPONSES_USAGE

pytestmark = pytest.mark.e2e

HI = [{"role": "user", "content": "Say hello."}]


def oai(running: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key=running.keys["member"], max_retries=0, timeout=30)


def ant(running: Running) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=running.base_url.removesuffix("/v1"), api_key=running.keys["member"],
                               max_retries=0, timeout=30)


class TestResponsesPassThrough:
    def test_the_request_goes_through_untranslated(self, running: Running) -> None:
        r = oai(running).responses.create(model="test/native", input="Say hello.", metadata={"k": "v"},
                                          extra_body={"vendor_knob": 3})
        assert r.output_text == NATIVE_TEXT
        assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (9, 4)
        sent = running.upstreams["a"].requests[-1]
        assert sent["model"] == "native" and sent["input"] == "Say hello." and sent["metadata"] == {"k": "v"}
        assert sent["vendor_knob"] == 3  # a field the gateway does not know reaches the upstream
        assert sent["store"] is False  # the gateway keeps the response, not the upstream
        assert "messages" not in sent

    def test_a_stream_is_the_upstreams_events(self, running: Running) -> None:
        with oai(running).responses.stream(model="test/native", input="Say hello.") as stream:
            final = stream.get_final_response()
        assert final.output_text == NATIVE_TEXT
        assert final.usage is not None and final.usage.total_tokens == RESPONSES_USAGE["total_tokens"]

    def test_previous_response_id_is_spelled_out_for_the_upstream(self, running: Running) -> None:
        c = oai(running)
        first = c.responses.create(model="test/native", input="Turn one.")
        second = c.responses.create(model="test/native", input="Turn two.", previous_response_id=first.id)
        sent = running.upstreams["a"].requests[-1]
        assert "previous_response_id" not in sent  # the upstream never saw our ids
        texts = json.dumps(sent["input"])
        assert "Turn one." in texts and NATIVE_TEXT in texts and "Turn two." in texts
        assert c.responses.retrieve(second.id).previous_response_id == first.id
        # ... and a translated deployment continues the same stored conversation.
        third = c.responses.create(model="test/chat", input="Turn three.", previous_response_id=second.id)
        roles = [m["role"] for m in running.upstreams["a"].requests[-1]["messages"]]
        assert roles == ["user", "assistant", "user", "assistant", "user"]
        assert third.output_text == "Hello from fake"

    def test_events_meter_the_upstreams_usage(self, running: Running) -> None:
        from e2e.inference.test_local_and_events import _collect

        rid = {k: f"req-native-{k}-{uuid.uuid4().hex}" for k in ("whole", "stream")}
        c = oai(running)

        def trigger() -> None:
            c.responses.create(model="test/native", input="x", extra_headers={"x-request-id": rid["whole"]})
            with c.responses.stream(model="test/native", input="x",
                                    extra_headers={"x-request-id": rid["stream"]}) as s:
                s.get_final_response()

        events = with_thread(_collect, running, trigger, set(rid.values()))
        for event in events.values():
            assert event.endpoint == "responses" and event.status == "ok"
            assert (event.prompt_tokens, event.completion_tokens) == (9, 4)
            assert (event.cached_prompt_tokens, event.reasoning_tokens) == (3, 1)

    def test_an_upstream_that_breaks_off_gets_an_error_event(self, running: Running) -> None:
        with httpx.stream("POST", running.base_url + "/responses", timeout=30,
                          headers={"authorization": "Bearer " + running.keys["member"]},
                          json={"model": "test/native-drop", "input": "x", "stream": True}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        last = json.loads(lines[-1][6:])
        assert last["type"] == "error" and "interrupted" in last["message"]
        assert last["sequence_number"] == json.loads(lines[-2][6:])["sequence_number"] + 1


class TestMessagesPassThrough:
    def test_the_request_and_anthropics_headers_go_through(self, running: Running) -> None:
        m = ant(running).messages.create(model="test/native", max_tokens=64, messages=HI,  # type: ignore[arg-type]
                                         extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
        assert m.content[0].text == NATIVE_TEXT  # type: ignore[union-attr]
        assert (m.usage.input_tokens, m.usage.cache_read_input_tokens) == (5, 2)
        assert m._request_id  # the SDK found the request id where Anthropic puts it
        sent = running.upstreams["a"].requests[-1]
        assert sent["model"] == "native" and sent["messages"] == HI and sent["max_tokens"] == 64
        headers = {k.lower(): v for k, v in running.upstreams["a"].headers[-1].items()}
        assert headers["anthropic-beta"] == "context-1m-2025-08-07"
        assert headers["anthropic-version"]
        assert running.keys["member"] not in json.dumps(headers)  # the client's key never reaches an upstream

    def test_a_stream_is_the_upstreams_events(self, running: Running) -> None:
        with ant(running).messages.stream(model="test/native", max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == NATIVE_TEXT
        assert final.usage.output_tokens == MESSAGES_USAGE["output_tokens"]

    def test_events_meter_the_prompt_with_its_cache_reads(self, running: Running) -> None:
        from e2e.inference.test_local_and_events import _collect

        rid = f"req-native-msg-{uuid.uuid4().hex}"
        c = ant(running)

        def trigger() -> None:
            with c.messages.stream(model="test/native", max_tokens=64, messages=HI,  # type: ignore[arg-type]
                                   extra_headers={"x-request-id": rid}) as s:
                s.get_final_message()

        event = with_thread(_collect, running, trigger, {rid})[rid]
        assert event.endpoint == "messages" and event.status == "ok" and event.finish_reason == "stop"
        assert (event.prompt_tokens, event.cached_prompt_tokens, event.completion_tokens) == (7, 2, 4)

    def test_an_upstream_that_breaks_off_gets_an_error_event(self, running: Running) -> None:
        with httpx.stream("POST", running.base_url + "/messages", timeout=30,
                          headers={"x-api-key": running.keys["member"]},
                          json={"model": "test/native-drop", "max_tokens": 8, "messages": HI, "stream": True}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        last = json.loads(lines[-1][6:])
        anthropic.types.ErrorResponse.model_validate(last)
        assert last["error"]["type"] == "api_error"
