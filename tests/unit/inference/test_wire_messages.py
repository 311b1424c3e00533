"""Anthropic Messages <-> chat completions: request translation, Message objects and the SSE stream.

Every object and event produced is validated against the official ``anthropic`` SDK's pydantic types, and
whole streams are read back through the SDK's own client and accumulator (over an in-memory transport).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import msgspec
import pydantic
import pytest
from anthropic.types import ErrorResponse, Message, RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionMessageParam
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

from aiaas.inference.schemas import MAX_TOKENS_LIMIT
from aiaas.inference.service.requests import parse
from aiaas.inference.service.wire.messages import (
    MessagesRequest,
    MessageStream,
    Usage,
    chat_request,
    count_text,
    message_of_completion,
    parse_request,
    stop_reason_of,
    tool_input,
)
from aiaas.kernel.errors import BadRequest

EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)
CHAT_MESSAGE = pydantic.TypeAdapter(ChatCompletionMessageParam)
CHAT_BODY = pydantic.TypeAdapter(CompletionCreateParamsStreaming)
USER = {"role": "user", "content": "hi"}


def body(**fields: Any) -> bytes:
    doc: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [USER]}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def req_of(**fields: Any) -> MessagesRequest:
    return parse_request(body(**fields))


def refused(raw: bytes, **kw: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_request(raw, **kw)
    return info.value


def assert_chat_accepts(chat: dict[str, Any]) -> None:
    """What a chat backend accepts: OpenAI's own request types, and this gateway's chat endpoint."""
    for message in chat["messages"]:
        CHAT_MESSAGE.validate_python(message)
    CHAT_BODY.validate_python({**chat, "stream": True})
    parse("chat.completions", json.dumps(chat).encode())


# --- SSE helpers ---


def events_of(sse: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """Each SSE frame as (event name, data), checking the frame layout byte by byte."""
    out = []
    for frame in sse:
        assert frame.startswith(b"event: ") and frame.endswith(b"\n\n") and frame.count(b"\n") == 3
        name_line, data_line = frame[:-2].split(b"\n")
        name, data = name_line[len(b"event: "):].decode(), json.loads(data_line[len(b"data: "):])
        assert data["type"] == name
        out.append((name, data))
    return out


def validate_stream(sse: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    """Validate every event with the SDK's types and check Anthropic's block discipline."""
    events = events_of(sse)
    open_index: int | None = None
    next_index = 0
    for name, data in events:
        if name == "ping":
            assert data == {"type": "ping"}
            continue
        if name == "error":
            ErrorResponse.model_validate(data)
            continue
        EVENT.validate_python(data)
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index  # never two blocks open, sequential
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        elif name in ("message_delta", "message_stop"):
            assert open_index is None
    return events


def sdk_client(payload: bytes, *, stream: bool, status: int = 200) -> tuple[anthropic.Anthropic, list[Any]]:
    """An SDK client whose every request is answered with ``payload`` (recorded requests in the list)."""
    seen: list[Any] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        ctype = "text/event-stream" if stream else "application/json"
        return httpx2.Response(status, headers={"content-type": ctype}, content=payload)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return anthropic.Anthropic(base_url="http://gateway.test", api_key="x", http_client=http, max_retries=0), seen


def final_message(sse: list[bytes]) -> anthropic.types.Message:
    """Validate every event, then read the whole stream through the SDK's client and accumulator."""
    validate_stream(sse)
    client, _ = sdk_client(b"".join(sse), stream=True)
    with client.messages.stream(model="claude-x", max_tokens=64, messages=[USER]) as stream:
        for _ in stream:  # the SDK's typed events, each built by its own accumulator
            pass
        return stream.get_final_message()


def delta(**d: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def done(reason: str | None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason, **extra}]}


def tool_chunk(index: int, *, id: str | None = None, name: str | None = None, args: str | None = None) -> dict:
    call: dict[str, Any] = {"index": index, "function": {}}
    if id is not None:
        call |= {"id": id, "type": "function"}
    if name is not None:
        call["function"]["name"] = name
    if args is not None:
        call["function"]["arguments"] = args
    return delta(tool_calls=[call])


def run_stream(chunks: list[dict[str, Any]], usage: Usage = Usage(11, 22, 3), **req_fields: Any) -> list[bytes]:
    s = MessageStream(req_of(**req_fields), message_id="msg_1", model="claude-x", estimated_input_tokens=9)
    out = s.start()
    for chunk in chunks:
        out += s.chunk(chunk)
    return out + s.finish(usage)


# --- parse_request ---


class TestParseRequest:
    def test_minimal_and_unknown_fields_ignored(self) -> None:
        req = parse_request(body(service_tier="auto", container="x", cache_control={"type": "ephemeral"}, zzz=1))
        assert req.model == "claude-sonnet-4-5" and req.max_tokens == 64 and req.messages[0].content == "hi"

    def test_count_tokens_body_needs_no_max_tokens(self) -> None:
        raw = body(max_tokens=None)
        assert parse_request(raw, count_tokens=True).max_tokens is None
        assert refused(raw).param == "max_tokens"

    @pytest.mark.parametrize(("raw", "param"), [
        (body(model=None), "model"),
        (body(model="a b"), "model"),
        (body(max_tokens=0), "max_tokens"),
        (body(max_tokens=MAX_TOKENS_LIMIT + 1), "max_tokens"),
        (body(messages=[]), "messages"),
        (body(messages=[{"role": "tool", "content": "x"}]), "messages[0].role"),
        (body(messages=[{"role": "user"}]), "messages[0].content"),
        (body(messages=[USER, {"role": "user", "content": [{"text": "x"}]}]), "messages[1].content[0].type"),
        (body(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]), "messages[0].content[0].text"),
        (body(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "bad"}}]}]),
         "messages[0].content[0].source.type"),
        (body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n",
                                                            "input": "x"}]}]), "messages[0].content[0].input"),
        (body(temperature=1.5), "temperature"),
        (body(top_p=-0.1), "top_p"),
        (body(top_k=-1), "top_k"),
        (body(stop_sequences="x"), "stop_sequences"),
        (body(system=[{"type": "image"}]), "system[0].type"),
        (body(metadata={"user_id": 5}), "metadata.user_id"),
        (body(tool_choice={"type": "sometimes"}), "tool_choice.type"),
        (body(thinking={"budget_tokens": 5}), "thinking.type"),
        (body(tools=[{"name": "x"}]), "tools[0].input_schema"),
        (body(tools=[{"input_schema": {"type": "object"}}]), "tools[0].name"),
        (body(tools=[{"name": "x", "input_schema": {}}, {"name": "x", "input_schema": {}}]), "tools[1].name"),
        (body(tool_choice={"type": "any"}), "tool_choice.type"),
        (body(tools=[{"name": "x", "input_schema": {}}], tool_choice={"type": "tool", "name": "y"}),
         "tool_choice.name"),
    ])
    def test_invalid_names_param(self, raw: bytes, param: str) -> None:
        err = refused(raw)
        assert err.param == param and param in err.detail

    @pytest.mark.parametrize(("raw", "code"), [
        (b"", "invalid_json"), (b"{", "invalid_json"),
        (body(tools=[{"name": "x", "input_schema": {"a": "DEEP"}}]).replace(
            b'"DEEP"', b"[" * 100_000 + b"]" * 100_000), "json_too_deep"),
    ])
    def test_not_json(self, raw: bytes, code: str) -> None:
        assert refused(raw).code == code

    @pytest.mark.parametrize("kind", [
        "web_search_20250305", "bash_20250124", "text_editor_20250728", "computer_20250124",
        "code_execution_20250825", "web_fetch_20250910", "memory_20250818", "browser_toolset_20260801",
    ])
    def test_server_tools_refused(self, kind: str) -> None:
        tools = [{"name": "ok", "input_schema": {"type": "object"}}, {"type": kind, "name": "srv"}]
        err = refused(body(tools=tools))
        assert (err.code, err.param) == ("unsupported_tool", "tools[1].type") and kind in err.detail

    @pytest.mark.parametrize(("block", "param"), [
        ({"type": "search_result", "source": "s", "title": "t", "content": []}, "messages[0].content[1].type"),
        ({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}, "messages[0].content[1].type"),
        ({"type": "web_search_tool_result", "tool_use_id": "s", "content": []}, "messages[0].content[1].type"),
        ({"type": "container_upload", "file_id": "f"}, "messages[0].content[1].type"),
        ({"type": "brand_new_block"}, "messages[0].content[1].type"),
        ({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
         "messages[0].content[1].type"),
        ({"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}, "messages[0].content[1].type"),
        ({"type": "document", "source": {"type": "file", "file_id": "file_1"}}, "messages[0].content[1].type"),
        ({"type": "image", "source": {"type": "file", "file_id": "file_1"}}, "messages[0].content[1].type"),
        ({"type": "tool_use", "id": "t", "name": "n", "input": {}}, "messages[0].content[1].type"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_reference", "tool_name": "x"}]},
         "messages[0].content[1].content[0].type"),
        ({"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "document", "source": {"type": "file", "file_id": "f"}}]},
         "messages[0].content[1].content[0].type"),
        ({"type": "document", "source": {"type": "content", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f"}}]}},
         "messages[0].content[1].source.content[0].type"),
    ])
    def test_inexpressible_user_blocks_refused(self, block: dict[str, Any], param: str) -> None:
        err = refused(body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, block]}]))
        assert (err.code, err.param) == ("unsupported_content", param)
        assert param.removesuffix(".type") in err.detail

    @pytest.mark.parametrize(("role", "block"), [
        ("assistant", {"type": "tool_result", "tool_use_id": "t", "content": "x"}),
        ("assistant", {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}),
        ("system", {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}),
    ])
    def test_blocks_in_the_wrong_turn_refused(self, role: str, block: dict[str, Any]) -> None:
        err = refused(body(messages=[USER, {"role": role, "content": [block]}]))
        assert (err.code, err.param) == ("unsupported_content", "messages[1].content[0].type")
        assert role in err.detail


# --- chat_request ---


class TestChatRequest:
    def test_options(self) -> None:
        tools = [{"name": "get", "description": "Get it", "input_schema": {"type": "object"}, "strict": True,
                  "type": "custom", "cache_control": {"type": "ephemeral"}},
                 {"name": "put", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}]
        req = req_of(system="Be brief.", tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True},
                     stop_sequences=["END", "STOP"], temperature=0.5, top_p=0.9, top_k=40,
                     metadata={"user_id": "u-1"}, thinking={"type": "enabled", "budget_tokens": 2048})
        chat = chat_request(req, stream=True)
        assert chat == {
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
            "max_tokens": 64,
            "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"},
                                                        "description": "Get it", "strict": True}},
                      {"type": "function", "function": {"name": "put", "parameters": tools[1]["input_schema"]}}],
            "tool_choice": "auto", "parallel_tool_calls": False, "stop": ["END", "STOP"],
            "temperature": 0.5, "top_p": 0.9, "top_k": 40, "user": "u-1",
            "stream": True, "stream_options": {"include_usage": True},
        }  # no thinking budget: chat completions cannot carry one
        assert_chat_accepts(chat)

    @pytest.mark.parametrize(("effort", "expected"), [("low", "low"), ("high", "high"), ("xhigh", "high"),
                                                      ("max", "high")])
    def test_output_config_becomes_response_format_and_effort(self, effort: str, expected: str) -> None:
        schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
        chat = chat_request(req_of(output_config={"format": {"type": "json_schema", "schema": schema},
                                                  "effort": effort}), stream=False)
        assert chat["response_format"] == {"type": "json_schema",
                                           "json_schema": {"name": "output", "schema": schema, "strict": True}}
        assert chat["reasoning_effort"] == expected
        assert_chat_accepts(chat)

    def test_an_unknown_output_format_or_effort_is_a_400(self) -> None:
        err = refused(body(output_config={"format": {"type": "regex", "schema": {}}}))
        assert err.param is not None and err.param.startswith("output_config")
        err = refused(body(output_config={"effort": "extreme"}))
        assert err.param == "output_config.effort"

    def test_defaults_left_out(self) -> None:
        chat = chat_request(req_of(stop_sequences=[], metadata={}), stream=False)
        assert chat == {"model": "claude-sonnet-4-5", "messages": [USER], "max_tokens": 64}

    @pytest.mark.parametrize(("choice", "expected"), [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get"}, {"type": "function", "function": {"name": "get"}}),
    ])
    def test_tool_choice(self, choice: dict[str, Any], expected: Any) -> None:
        chat = chat_request(req_of(tools=[{"name": "get", "input_schema": {}}], tool_choice=choice), stream=False)
        assert chat["tool_choice"] == expected and "parallel_tool_calls" not in chat

    def test_tool_choice_none_without_tools_dropped(self) -> None:
        assert "tool_choice" not in chat_request(req_of(tool_choice={"type": "none"}), stream=False)

    def test_system_blocks_joined(self) -> None:
        system = [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "B"}]
        assert chat_request(req_of(system=system), stream=False)["messages"][0] == {"role": "system",
                                                                                     "content": "A\n\nB"}
        assert chat_request(req_of(system=""), stream=False)["messages"] == [USER]

    def test_system_turn_inside_messages(self) -> None:
        messages = [USER, {"role": "system", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]},
                    {"role": "system", "content": "z"}]
        assert chat_request(req_of(messages=messages), stream=False)["messages"][1:] == [
            {"role": "system", "content": "x\n\ny"}, {"role": "system", "content": "z"}]

    def test_user_blocks(self) -> None:
        content = [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/i.jpg"}},
            {"type": "document", "title": "notes.txt", "source": {"type": "text", "media_type": "text/plain",
                                                                  "data": "plain"}},
            {"type": "document", "source": {"type": "content", "content": "inline"}},
            {"type": "document", "source": {"type": "content", "content": [
                {"type": "text", "text": "t"}, {"type": "image", "source": {"type": "url", "url": "https://x/j"}}]}},
            {"type": "thinking", "thinking": "dropped", "signature": "s"},
        ]
        chat = chat_request(req_of(messages=[{"role": "user", "content": content}]), stream=False)
        assert chat["messages"] == [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
            {"type": "image_url", "image_url": {"url": "https://x/i.jpg"}},
            {"type": "text", "text": "notes.txt"}, {"type": "text", "text": "plain"},
            {"type": "text", "text": "inline"},
            {"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "https://x/j"}},
        ]}]
        assert_chat_accepts(chat)

    def test_single_text_block_is_a_string(self) -> None:
        chat = chat_request(req_of(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}]),
                            stream=False)
        assert chat["messages"] == [{"role": "user", "content": "x"}]

    def test_tool_round_trip(self) -> None:
        messages = [
            USER,
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "plan", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Zürich", "n": [1, 2]}},
                {"type": "tool_use", "id": "toolu_2", "name": "put", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "and also"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True, "content": [
                    {"type": "text", "text": "boom"}, {"type": "text", "text": "trace"},
                    {"type": "image", "source": {"type": "url", "url": "https://x/shot.png"}}]},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "get", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "only", "signature": "s"}]},
        ]
        tools = [{"name": "get", "input_schema": {}}, {"name": "put", "input_schema": {}}]
        chat = chat_request(req_of(messages=messages, tools=tools), stream=False)
        assert chat["messages"] == [
            USER,
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get", "arguments": '{"city":"Zürich","n":[1,2]}'}},
                {"id": "toolu_2", "type": "function", "function": {"name": "put", "arguments": "{}"}}]},
            # tool messages first (right after the tool calls), then the turn's images and text
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "boom\ntrace"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/shot.png"}},
                                         {"type": "text", "text": "and also"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_3", "type": "function", "function": {"name": "get", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
            {"role": "assistant", "content": ""},
        ]
        assert json.loads(chat["messages"][1]["tool_calls"][0]["function"]["arguments"]) == messages[1]["content"][3][
            "input"]
        assert_chat_accepts(chat)

    def test_assistant_string_and_prefill(self) -> None:
        messages = [USER, {"role": "assistant", "content": "The answer is ("}]
        assert chat_request(req_of(messages=messages), stream=False)["messages"][1] == messages[1]

    def test_count_text(self) -> None:
        tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
        req = req_of(system="SYSTEM-PROMPT", tools=tools)
        text = count_text(req)
        chat = chat_request(req, stream=False)
        assert text == msgspec.json.encode(chat["messages"]) + msgspec.json.encode(chat["tools"])
        assert b"SYSTEM-PROMPT" in text and b"get_weather" in text
        assert count_text(req_of()) == msgspec.json.encode([USER])
        assert count_text(parse_request(body(max_tokens=None), count_tokens=True)) == msgspec.json.encode([USER])

    def test_claude_code_style_request(self) -> None:
        tools = [{"name": f"Tool{i}", "description": f"Does thing {i}", "input_schema": {
            "type": "object", "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["path"], "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#"}} for i in range(40)]
        tools[-1]["cache_control"] = {"type": "ephemeral"}
        raw = json.dumps({
            "model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "temperature": 1, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                       {"type": "text", "text": "Long instructions...", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "Read a.py", "cache_control": {"type": "ephemeral"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should read it.", "signature": "EqQBCkYIBxgCKkA"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "Tool0", "input": {"path": "a.py"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A",
                                              "content": [{"type": "text", "text": "print(1)"}],
                                              "cache_control": {"type": "ephemeral"}}]},
            ],
            "tools": tools, "tool_choice": {"type": "auto"},
            "metadata": {"user_id": "user_abc_account__session_123"},
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "context_management": {"edits": []},
        }).encode()
        req = parse_request(raw)
        assert req.stream and req.max_tokens == 32000
        chat = chat_request(req, stream=bool(req.stream))
        assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool"]
        assert chat["messages"][0]["content"].endswith("\n\nLong instructions...")
        assert chat["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01A", "content": "print(1)"}
        assert len(chat["tools"]) == 40 and chat["tool_choice"] == "auto" and chat["temperature"] == 1
        assert chat["user"] == "user_abc_account__session_123" and "thinking" not in chat
        assert_chat_accepts(chat)


# --- stop reasons and tool input ---


@pytest.mark.parametrize(("finish", "chat_stop", "tool_use", "expected"), [
    ("stop", None, False, ("end_turn", None)),
    (None, None, False, ("end_turn", None)),
    ("stop", "END", False, ("stop_sequence", "END")),
    ("stop", "OTHER", False, ("end_turn", None)),
    ("stop", 128001, False, ("end_turn", None)),  # vLLM's stop token id, not a sequence
    ("length", None, True, ("max_tokens", None)),
    ("tool_calls", None, False, ("tool_use", None)),
    ("function_call", None, False, ("tool_use", None)),
    ("stop", None, True, ("tool_use", None)),
    ("content_filter", None, False, ("refusal", None)),
])
def test_stop_reason_of(finish: str | None, chat_stop: Any, tool_use: bool, expected: tuple[str, str | None]) -> None:
    assert stop_reason_of(finish, chat_stop, ["END"], tool_use=tool_use) == expected


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"a":1}', {"a": 1}),
    ("", {}), ("  ", {}), (None, {}),
    ({"a": 1}, {"a": 1}),
    ('{"a":', {"_raw_arguments": '{"a":'}),
    ("[1,2]", {"_raw_arguments": "[1,2]"}),
    ("null", {"_raw_arguments": "null"}),
    ([1], {"_raw_arguments": "[1]"}),
])
def test_tool_input(arguments: Any, expected: dict[str, Any]) -> None:
    assert tool_input(arguments) == expected


# --- message_of_completion ---


def completion(message: dict[str, Any], finish: str | None = "stop", **choice: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def as_message(chat: dict[str, Any], **req_fields: Any) -> dict[str, Any]:
    out = message_of_completion(chat, req_of(**req_fields), message_id="msg_1", model="claude-x",
                                usage=Usage(12, 34, 5))
    Message.model_validate(out)
    return out


class TestMessageOfCompletion:
    def test_text(self) -> None:
        assert as_message(completion({"content": "Hello", "tool_calls": None, "refusal": None})) == {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 34, "cache_read_input_tokens": 5,
                      "cache_creation_input_tokens": 0}}

    def test_tool_calls(self) -> None:
        calls = [{"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"q":"x"}'}},
                 {"type": "function", "function": {"name": "put", "arguments": "not json"}},
                 {"type": "function", "function": {"name": "noargs", "arguments": ""}},
                 {"type": "weird"}]
        out = as_message(completion({"content": "Sure.", "tool_calls": calls}, "tool_calls"))
        text, first, second, third = out["content"]
        assert text == {"type": "text", "text": "Sure."}
        assert first == {"type": "tool_use", "id": "call_1", "name": "get", "input": {"q": "x"}}
        assert second["id"].startswith("toolu_") and len(second["id"]) == 30
        assert second["input"] == {"_raw_arguments": "not json"} and third["input"] == {}
        assert out["stop_reason"] == "tool_use"

    def test_tool_calls_finished_with_stop_are_tool_use(self) -> None:
        calls = [{"id": "c", "type": "function", "function": {"name": "get", "arguments": "{}"}}]
        out = as_message(completion({"content": None, "tool_calls": calls}, "stop"))
        assert out["stop_reason"] == "tool_use" and [b["type"] for b in out["content"]] == ["tool_use"]

    def test_stop_sequence(self) -> None:
        out = as_message(completion({"content": "a"}, "stop", stop_reason="END"), stop_sequences=["END"])
        assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")

    @pytest.mark.parametrize(("finish", "reason"), [("length", "max_tokens"), ("content_filter", "refusal")])
    def test_other_finishes(self, finish: str, reason: str) -> None:
        assert as_message(completion({"content": "a"}, finish))["stop_reason"] == reason

    def test_refusal(self) -> None:
        out = as_message(completion({"content": None, "refusal": "I can't help with that."}))
        assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
        assert out["stop_reason"] == "refusal"

    def test_reasoning_only_when_thinking_enabled(self) -> None:
        chat = completion({"content": "42", "reasoning_content": "think"})
        assert [b["type"] for b in as_message(chat)["content"]] == ["text"]
        assert [b["type"] for b in as_message(chat, thinking={"type": "disabled"})["content"]] == ["text"]
        out = as_message(chat, thinking={"type": "enabled", "budget_tokens": 1024})
        assert out["content"] == [{"type": "thinking", "thinking": "think", "signature": ""},
                                  {"type": "text", "text": "42"}]
        vllm = completion({"content": "42", "reasoning": "newer vllm"})
        assert as_message(vllm, thinking={"type": "adaptive"})["content"][0]["thinking"] == "newer vllm"

    @pytest.mark.parametrize("chat", [
        {"choices": []}, {}, {"choices": [{"index": 0, "message": None, "finish_reason": None}]},
        completion({"content": ""}), completion({"content": [{"type": "text", "text": ""}]}),
    ])
    def test_empty_answers(self, chat: dict[str, Any]) -> None:
        out = as_message(chat)
        assert out["content"] == [] and out["stop_reason"] == "end_turn"

    def test_list_content_and_choice_index(self) -> None:
        chat = completion({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
        chat["choices"].insert(0, {"index": 1, "message": {"content": "other"}, "finish_reason": "stop"})
        assert as_message(chat)["content"] == [{"type": "text", "text": "ab"}]

    def test_sdk_create_reads_it(self) -> None:
        calls = [{"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"q":[1]}'}}]
        out = as_message(completion({"content": "Hi", "tool_calls": calls}, "tool_calls"))
        client, seen = sdk_client(json.dumps(out).encode(), stream=False)
        msg = client.messages.create(model="claude-x", max_tokens=64, messages=[USER])
        assert seen[0]["max_tokens"] == 64
        assert msg.content[0].type == "text" and msg.content[0].text == "Hi"
        assert msg.content[1].type == "tool_use" and msg.content[1].input == {"q": [1]}
        assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (12, 34, 5)
        assert msg.stop_reason == "tool_use"


# --- MessageStream ---


class TestMessageStream:
    def test_start(self) -> None:
        s = MessageStream(req_of(), message_id="msg_9", model="claude-x", estimated_input_tokens=17)
        (start, start_data), (ping, _) = validate_stream(s.start())
        assert (start, ping) == ("message_start", "ping")
        assert start_data["message"]["usage"] == {"input_tokens": 17, "output_tokens": 0}
        assert start_data["message"]["content"] == [] and start_data["message"]["stop_reason"] is None
        assert start_data["message"]["id"] == "msg_9" and start_data["message"]["model"] == "claude-x"

    def test_text_then_tools_through_the_sdk(self) -> None:
        chunks = [
            delta(role="assistant", content=""), delta(content="Hel"), delta(content=None), delta(content="lo"),
            tool_chunk(0, id="call_a", name="get", args=""), tool_chunk(0, args='{"city":'),
            tool_chunk(0, args='"Zü"}'),
            tool_chunk(1, id="call_b", name="put", args="{}"),
            done("tool_calls"), {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
        ]
        sse = run_stream(chunks)
        names = [n for n, _ in validate_stream(sse)]
        assert names == ["message_start", "ping",
                         "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                         "content_block_start", "content_block_delta", "content_block_stop",
                         "content_block_start", "content_block_delta", "content_block_stop",
                         "message_delta", "message_stop"]
        msg = final_message(sse)
        assert [b.type for b in msg.content] == ["text", "tool_use", "tool_use"]
        assert msg.content[0].text == "Hello"
        assert (msg.content[1].id, msg.content[1].name, msg.content[1].input) == ("call_a", "get", {"city": "Zü"})
        assert (msg.content[2].id, msg.content[2].input) == ("call_b", {})
        assert msg.stop_reason == "tool_use" and msg.stop_sequence is None
        # the exact counts passed to finish, not the estimate of message_start nor the chat usage
        assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (11, 22, 3)

    def test_raw_events_through_sdk_create(self) -> None:
        sse = run_stream([delta(content="x"), done("length")])
        client, _ = sdk_client(b"".join(sse), stream=True)
        events = list(client.messages.create(model="claude-x", max_tokens=64, messages=[USER], stream=True))
        assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                            "content_block_stop", "message_delta", "message_stop"]
        assert events[4].delta.stop_reason == "max_tokens" and events[4].usage.input_tokens == 11

    def test_tool_arguments_are_checked_before_they_go_out(self) -> None:
        chunks = [tool_chunk(0, id="call_a", name="get", args='{"a": tru'), tool_chunk(0, args="ncated"),
                  tool_chunk(1, id="call_b", name="noargs"), done("tool_calls")]
        sse = run_stream(chunks)
        events = validate_stream(sse)
        partials = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
        assert partials == ['{"_raw_arguments":"{\\"a\\": truncated"}', "{}"]  # never invalid JSON
        msg = final_message(sse)
        assert msg.content[0].input == {"_raw_arguments": '{"a": truncated'} and msg.content[1].input == {}

    def test_tool_call_without_id_or_name_yet(self) -> None:
        chunks = [tool_chunk(0, args='{"x"'), tool_chunk(0, name="late", args=":1}"),
                  tool_chunk(1, args="{}"), delta(content="after"), tool_chunk(0, args="ignored"), done("stop")]
        sse = run_stream(chunks)
        validate_stream(sse)
        msg = final_message(sse)
        first, second, text = msg.content
        assert (first.name, first.input) == ("late", {"x": 1}) and first.id.startswith("toolu_")
        assert (second.name, second.input) == ("", {}) and second.id != first.id
        assert text.text == "after" and msg.stop_reason == "tool_use"

    def test_whole_calls_under_one_index_and_repeated_ids(self) -> None:
        chunks = [tool_chunk(0, id="a", name="one", args='{"n":1}'), tool_chunk(0, id="b", name="two", args="{"),
                  tool_chunk(0, id="b", args='"n":2}'), done("tool_calls")]
        sse = run_stream(chunks)
        validate_stream(sse)
        msg = final_message(sse)
        assert [(b.id, b.name, b.input) for b in msg.content] == [("a", "one", {"n": 1}), ("b", "two", {"n": 2})]

    def test_reasoning_becomes_thinking_when_enabled(self) -> None:
        chunks = [delta(reasoning_content="step 1, "), delta(reasoning="step 2"), delta(content="42"), done("stop")]
        sse = run_stream(chunks, thinking={"type": "enabled", "budget_tokens": 1024})
        events = validate_stream(sse)
        assert ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "signature_delta", "signature": ""}}) in events
        msg = final_message(sse)
        assert [b.type for b in msg.content] == ["thinking", "text"]
        assert msg.content[0].thinking == "step 1, step 2" and msg.content[0].signature == ""
        assert msg.content[1].text == "42" and msg.stop_reason == "end_turn"

    def test_reasoning_dropped_without_thinking(self) -> None:
        msg = final_message(run_stream([delta(reasoning_content="hidden"), delta(content="42"), done("stop")]))
        assert [b.type for b in msg.content] == ["text"]

    def test_stop_sequence_and_refusal(self) -> None:
        msg = final_message(run_stream([delta(content="a"), done("stop", stop_reason="END")], stop_sequences=["END"]))
        assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "END")
        msg = final_message(run_stream([delta(refusal="No."), done("stop")]))
        assert msg.content[0].text == "No." and msg.stop_reason == "refusal"
        assert final_message(run_stream([delta(content="a"), done("content_filter")])).stop_reason == "refusal"

    def test_empty_stream(self) -> None:
        sse = run_stream([{"choices": []}, {"choices": [{"index": 1, "delta": {"content": "other choice"}}]}])
        assert [n for n, _ in validate_stream(sse)] == ["message_start", "ping", "message_delta", "message_stop"]
        msg = final_message(sse)
        assert msg.content == [] and msg.stop_reason == "end_turn"

    def test_fail(self) -> None:
        s = MessageStream(req_of(), message_id="msg_1", model="claude-x", estimated_input_tokens=1)
        head = s.start() + s.chunk(delta(content="partial"))
        tail = s.fail("The upstream failed.", "overloaded_error")
        (name, data), = validate_stream(tail)
        assert name == "error"
        assert data == {"type": "error", "error": {"type": "overloaded_error", "message": "The upstream failed."}}
        assert validate_stream(s.fail("x"))[0][1]["error"]["type"] == "api_error"
        client, _ = sdk_client(b"".join(head + tail), stream=True)
        with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(
                model="claude-x", max_tokens=64, messages=[USER]) as stream:
            stream.get_final_message()
        assert "The upstream failed." in str(info.value)

    @given(text=st.text(min_size=1, max_size=60), args=st.dictionaries(st.text(max_size=8), st.integers() | st.text(
        max_size=8), max_size=4), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
           reasoning=st.booleans())
    def test_any_chunking_accumulates_to_the_same_message(self, text: str, args: dict[str, Any], cuts: list[int],
                                                          reasoning: bool) -> None:
        def pieces(s: str) -> list[str]:
            points = sorted({c % (len(s) + 1) for c in cuts} | {0, len(s)})
            return [s[a:b] for a, b in itertools.pairwise(points)]

        arguments = json.dumps(args)
        chunks = [delta(reasoning_content="r")] if reasoning else []
        chunks += [delta(content=p) for p in pieces(text)]
        chunks += [tool_chunk(0, id="call_1", name="fn", args="")]
        chunks += [tool_chunk(0, args=p) for p in pieces(arguments)]
        chunks += [done("tool_calls")]
        sse = run_stream(chunks, thinking={"type": "enabled", "budget_tokens": 1024} if reasoning else None)
        validate_stream(sse)
        msg = final_message(sse)
        blocks = [b for b in msg.content if b.type != "thinking"]
        assert blocks[0].text == text and blocks[1].input == args and len(msg.content) == 2 + reasoning


def test_validators_catch_bad_shapes() -> None:
    """The checks above are not vacuous: the SDK types refuse a wrong event, and the order check fires."""
    with pytest.raises(pydantic.ValidationError):
        EVENT.validate_python({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
    with pytest.raises(pydantic.ValidationError):
        Message.model_validate({"id": "m", "type": "message", "role": "assistant", "model": "x", "content": [],
                                "usage": {"input_tokens": 1}})
    bad: Callable[[], Any] = lambda: validate_stream([  # noqa: E731
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
        b'"content_block":{"type":"text","text":""}}\n\n'])
    with pytest.raises(AssertionError):
        bad()
