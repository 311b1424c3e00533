"""Anthropic's Messages API through the running streamer, with the official ``anthropic`` SDK: text, streams,
a tool-use round trip, token counting, Anthropic's error shape, and a captured Claude Code request; the
upstream is a chat-completions fake, so every byte was translated."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent

from e2e.inference.conftest import Running, eventually
from e2e.inference.sse import post_sse
from fake_upstream import AGENT_ARGUMENTS

pytestmark = pytest.mark.e2e

_events = pydantic.TypeAdapter(RawMessageStreamEvent)
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"},
                                                             "unit": {"type": "string"}},
                            "required": ["location"]}}
HI = [{"role": "user", "content": "Say hello."}]


def root(running: Running) -> str:
    return running.base_url.removesuffix("/v1")  # Anthropic's SDK adds /v1/messages itself


def client(running: Running, key: str = "member") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=root(running), api_key=running.keys[key], max_retries=0, timeout=60)


def sse(running: Running, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
    """POST /v1/messages and parse the event stream as it came over the wire."""
    return post_sse(running.base_url + "/messages", body, headers)


def assert_valid_sequence(events: list[dict[str, Any]]) -> None:
    """Every event validates against the SDK's types (``ping`` has its own tiny shape), in Anthropic's order."""
    for event in events:
        if event["type"] == "ping":
            assert event == {"type": "ping"}
        else:
            _events.validate_python(event)
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    starts = [e["index"] for e in events if e["type"] == "content_block_start"]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert starts == stops == list(range(len(starts)))  # blocks numbered in order, each closed


class TestCreate:
    def test_text(self, running: Running) -> None:
        raw = client(running).messages.with_raw_response.create(model="test/chat", max_tokens=64, messages=HI)
        m = raw.parse()
        assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
        assert m.model == "test/chat"
        assert [b.type for b in m.content] == ["text"] and m.content[0].text == "Hello from fake"  # type: ignore[union-attr]
        assert m.stop_reason == "end_turn"
        assert (m.usage.input_tokens, m.usage.output_tokens) == (7, 3)
        assert raw.headers["request-id"]

    def test_system_and_parameters_reach_the_upstream(self, running: Running) -> None:
        # This SDK release has no sampling arguments any more; older clients (and Claude Code) still send them.
        client(running).messages.create(model="test/chat", max_tokens=50, system="Be brief.", messages=HI,
                                        stop_sequences=["END"], metadata={"user_id": "u-1"},
                                        extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 5})
        sent = running.upstreams["a"].requests[-1]
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["top_k"]) == (50, 0.2, 0.9, 5)
        assert sent["stop"] == ["END"] and sent["user"] == "u-1"

    def test_stream_with_the_sdk_helper(self, running: Running) -> None:
        with client(running).messages.stream(model="test/chat", max_tokens=64, messages=HI) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "Hello from fake"
        assert final.stop_reason == "end_turn"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)

    def test_every_streamed_event_validates(self, running: Running) -> None:
        status, events = sse(running, {"model": "test/chat", "max_tokens": 64, "messages": HI, "stream": True},
                             {"x-api-key": running.keys["member"], "anthropic-version": "2023-06-01"})
        assert status == 200
        assert_valid_sequence(events)
        assert [e["type"] for e in events] == ["message_start", "ping", "content_block_start",
                                               *["content_block_delta"] * 3, "content_block_stop",
                                               "message_delta", "message_stop"]
        assert events[-2]["usage"]["output_tokens"] == 3


    def test_structured_output(self, running: Running) -> None:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
                  "additionalProperties": False}
        m = client(running).messages.create(model="test/agent", max_tokens=50, messages=HI,
                                            output_config={"format": {"type": "json_schema", "schema": schema}})
        assert json.loads(m.content[0].text) == {"answer": "forty-two"}  # type: ignore[union-attr]
        sent = running.upstreams["a"].requests[-1]
        assert sent["response_format"]["json_schema"]["schema"] == schema


class TestToolUse:
    def test_a_tool_use_round_trip(self, running: Running) -> None:
        c = client(running)
        first = c.messages.create(model="test/agent", max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
                                  messages=[{"role": "user", "content": "Weather in Paris?"}])
        assert first.stop_reason == "tool_use"
        use = next(b for b in first.content if b.type == "tool_use")
        assert use.name == "get_weather" and use.input == json.loads(AGENT_ARGUMENTS)  # type: ignore[union-attr]
        second = c.messages.create(
            model="test/agent", max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,  # type: ignore[union-attr]
                                                    "content": "18C"}]}])
        assert second.stop_reason == "end_turn"
        assert second.content[0].text == "The tool said: 18C"  # type: ignore[union-attr]
        sent = running.upstreams["a"].requests[-1]["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[2]["tool_call_id"] == use.id  # type: ignore[union-attr]

    def test_a_streamed_tool_use(self, running: Running) -> None:
        with client(running).messages.stream(model="test/agent", max_tokens=256, tools=[WEATHER],  # type: ignore[list-item]
                                             messages=[{"role": "user", "content": "Weather?"}]) as stream:
            final = stream.get_final_message()
        use = next(b for b in final.content if b.type == "tool_use")
        assert use.input == json.loads(AGENT_ARGUMENTS)  # type: ignore[union-attr]
        assert final.stop_reason == "tool_use"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 5)

    def test_input_json_arrives_whole_and_checked(self, running: Running) -> None:
        # The upstream sends the arguments in three fragments; they are held until the call ends and go out
        # as one checked input_json_delta, since an SDK's accumulator fails on JSON a small model breaks.
        status, events = sse(running, {"model": "test/agent", "max_tokens": 64, "tools": [WEATHER], "stream": True,
                                       "messages": [{"role": "user", "content": "Weather?"}]},
                             {"x-api-key": running.keys["member"]})
        assert status == 200
        assert_valid_sequence(events)
        fragments = [e["delta"]["partial_json"] for e in events
                     if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"]
        assert len(fragments) == 1 and json.loads(fragments[0]) == json.loads(AGENT_ARGUMENTS)


class TestCountTokens:
    def test_count_tokens(self, running: Running) -> None:
        n = client(running).messages.count_tokens(model="test/chat", messages=HI, system="Be brief.")
        assert n.input_tokens > 0
        longer = client(running).messages.count_tokens(model="test/chat", messages=HI * 9, system="Be brief.")
        assert longer.input_tokens > n.input_tokens

    def test_count_tokens_needs_access_to_the_model(self, running: Running) -> None:
        with pytest.raises(anthropic.NotFoundError):
            client(running).messages.count_tokens(model="nope/none", messages=HI)


class TestErrors:
    def test_a_bad_key_is_anthropics_authentication_error(self, running: Running) -> None:
        bad = anthropic.Anthropic(base_url=root(running), api_key="sk-aiaas-not-a-real-key", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as err:
            bad.messages.create(model="test/chat", max_tokens=8, messages=HI)
        body = err.value.body
        assert isinstance(body, dict)
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
        assert body["status"] == 401 and body["detail"] and body["problem_type"].startswith("https://")

    def test_a_missing_field_is_an_invalid_request_error(self, running: Running) -> None:
        r = httpx.post(running.base_url + "/messages", json={"model": "test/chat", "messages": HI},
                       headers={"x-api-key": running.keys["member"]})
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in body["error"]["message"]

    def test_a_server_tool_is_refused_naming_it(self, running: Running) -> None:
        with pytest.raises(anthropic.BadRequestError) as err:
            client(running).messages.create(model="test/chat", max_tokens=8, messages=HI,
                                            tools=[{"type": "web_search_20250305", "name": "web_search"}])  # type: ignore[list-item]
        assert "web_search_20250305" in str(err.value)

    def test_an_unknown_model_is_not_found(self, running: Running) -> None:
        with pytest.raises(anthropic.NotFoundError) as err:
            client(running).messages.create(model="nope/none", max_tokens=8, messages=HI)
        assert err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


CLAUDE_CODE_HEADERS = {"anthropic-version": "2023-06-01",
                       "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                         "fine-grained-tool-streaming-2025-05-14",
                       "anthropic-dangerous-direct-browser-access": "true", "x-app": "cli",
                       "user-agent": "claude-cli/2.0.0 (external, cli)"}
CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "test/agent",
    "max_tokens": 32000,
    "temperature": 1,
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "You are an interactive CLI tool that helps users with software engineering tasks.",
         "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>As you answer, use the tools.</system-reminder>"},
            {"type": "text", "text": "What files are here?", "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should list the files.", "signature": "EqQBCkYIBxgCKkB"},
            {"type": "text", "text": "I'll list them."},
            {"type": "tool_use", "id": "toolu_01A", "name": "Bash",
             "input": {"command": "ls", "description": "List files"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "README.md\nsrc", "is_error": False}]},
    ],
    "tools": [
        {"name": "Bash", "description": "Executes a bash command.", "input_schema": {
            "type": "object", "properties": {"command": {"type": "string"}, "description": {"type": "string"},
                                             "timeout": {"type": "number"}},
            "required": ["command"], "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#"}},
        {"name": "Read", "description": "Reads a file.", "input_schema": {
            "type": "object", "properties": {"file_path": {"type": "string"}, "limit": {"type": "number"}},
            "required": ["file_path"], "additionalProperties": False}},
    ],
    "tool_choice": {"type": "auto"},
    "metadata": {"user_id": "user_7f3a_account_2b1c_session_9d8e"},
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "stream": True,
}


class TestClaudeCodeRequest:
    def test_a_captured_claude_code_request_round_trips(self, running: Running) -> None:
        status, events = sse(running, CLAUDE_CODE_REQUEST,
                             {**CLAUDE_CODE_HEADERS, "x-api-key": running.keys["member"]})
        assert status == 200, events
        assert_valid_sequence(events)
        text = "".join(e["delta"]["text"] for e in events
                       if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta")
        assert text == "The tool said: README.md\nsrc"
        sent = running.upstreams["a"].requests[-1]
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
        assert "Claude Code" in sent["messages"][0]["content"]
        assert [t["function"]["name"] for t in sent["tools"]] == ["Bash", "Read"]
        assert "anthropic-beta" not in {k.lower() for k in running.upstreams["a"].headers[-1]}

    def test_a_bearer_token_works_too(self, running: Running) -> None:
        # Claude Code with ANTHROPIC_AUTH_TOKEN sends the key as a bearer token.
        body = {**CLAUDE_CODE_REQUEST, "stream": False}
        r = httpx.post(running.base_url + "/messages", json=body, timeout=60,
                       headers={**CLAUDE_CODE_HEADERS, "authorization": "Bearer " + running.keys["member"]})
        assert r.status_code == 200, r.text
        assert r.json()["content"][0]["text"] == "The tool said: README.md\nsrc"


class TestEmbeddedModel:
    def test_messages_on_the_embedded_model(self, running: Running) -> None:
        m = client(running).messages.create(model="local/gemma-3-270m", max_tokens=8, messages=HI)
        assert m.content and m.content[0].text.strip()  # type: ignore[union-attr]
        assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0

    def test_streamed_messages_on_the_embedded_model(self, running: Running) -> None:
        with client(running).messages.stream(model="local/gemma-3-270m", max_tokens=8, messages=HI) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text.strip()
        assert final.usage.output_tokens > 0


class TestStreamFailures:
    def test_an_upstream_that_breaks_off_ends_in_an_error_event(self, running: Running) -> None:
        status, events = sse(running, {"model": "test/drop", "max_tokens": 16, "messages": HI, "stream": True},
                             {"x-api-key": running.keys["member"]})
        assert status == 200
        assert events[-1]["type"] == "error"
        anthropic.types.ErrorResponse.model_validate(events[-1])
        assert not any(e["type"] == "message_stop" for e in events)

    def test_the_sdk_raises_on_it(self, running: Running) -> None:
        with pytest.raises(anthropic.APIError), \
                client(running).messages.stream(model="test/drop", max_tokens=16, messages=HI) as stream:
            stream.get_final_message()

    def test_a_client_that_leaves_cancels_the_upstream(self, running: Running) -> None:
        up = running.upstreams["a"]
        before = up.cancelled
        with httpx.stream("POST", running.base_url + "/messages", timeout=10,
                          headers={"x-api-key": running.keys["member"]},
                          json={"model": "test/slow-stream", "max_tokens": 16, "messages": HI, "stream": True}) as r:
            next(r.iter_bytes())
        assert eventually(lambda: up.cancelled > before)
