"""The Responses API <-> chat completions translation, checked against the official SDK's types and its own
stream accumulator (the SSE bytes are served to ``openai.OpenAI`` through ``httpx.MockTransport``)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, get_type_hints

import httpx
import msgspec
import openai
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import completion_create_params
from openai.types.responses import Response, ResponseInputItem, ResponseItem, ResponseStreamEvent

from aiaas.inference.service.requests import parse as parse_chat
from aiaas.inference.service.wire.responses import (
    ResponsesRequest,
    ResponseStream,
    Usage,
    chat_messages,
    chat_request,
    custom_tool_names,
    input_items,
    output_of_completion,
    parse_request,
    response_object,
)
from aiaas.kernel.errors import BadRequest

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
ITEM = pydantic.TypeAdapter(ResponseItem)
INPUT_ITEM = pydantic.TypeAdapter(ResponseInputItem)
CHAT_STREAMING = pydantic.TypeAdapter(completion_create_params.CompletionCreateParamsStreaming)
CHAT_KEYS = set(get_type_hints(completion_create_params.CompletionCreateParamsBase)) | {"stream"}
USAGE = Usage(input_tokens=120, output_tokens=30, cached_tokens=100, reasoning_tokens=7)


def new_ids() -> Callable[[str], str]:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter):04d}"


def req_of(**fields: Any) -> ResponsesRequest:
    return parse_request(json.dumps({"model": "gpt-test", "input": "hi", **fields}).encode())


def refused(body: dict[str, Any]) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_request(json.dumps({"model": "m", "input": "hi", **body}).encode())
    return info.value


def valid_response(obj: dict[str, Any]) -> Response:
    # Through JSON, as a client sees it: nothing the encoder cannot write.
    return Response.model_validate(json.loads(msgspec.json.encode(obj)))


# --- chat chunks ---


def chunk(delta: dict[str, Any] | None = None, *, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice],
            **extra}


def tool_chunk(index: int, *, id: str | None = None, name: str | None = None, args: str | None = None) -> dict:
    call: dict[str, Any] = {"index": index, "function": {}}
    if id:
        call |= {"id": id, "type": "function"}
    if name is not None:
        call["function"]["name"] = name
    if args is not None:
        call["function"]["arguments"] = args
    return chunk({"tool_calls": [call]})


USAGE_CHUNK = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def run_stream(req: ResponsesRequest, chunks: list[dict[str, Any]], *, usage: Usage | None = USAGE,
               fail: str | None = None) -> tuple[ResponseStream, bytes]:
    stream = ResponseStream(req, response_id="resp_1", created_at=1_700_000_000, new_id=new_ids(),
                            custom_tools=custom_tool_names(req))
    out = stream.start()
    for c in chunks:
        out += stream.chunk(c)
    out += stream.fail(fail) if fail is not None else stream.finish(usage or USAGE)
    return stream, b"".join(out)


def events_of(body: bytes, *, first: int = 0) -> list[dict[str, Any]]:
    """Each SSE event decoded, validated against the SDK's event union, and its framing checked."""
    events = []
    for block in body.decode().split("\n\n")[:-1]:
        head, data = block.split("\n")
        assert head.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data.removeprefix("data: "))
        assert head.removeprefix("event: ") == event["type"]
        EVENT.validate_python(event)
        events.append(event)
    assert body.endswith(b"\n\n")
    assert [e["sequence_number"] for e in events] == list(range(first, first + len(events)))
    return events


def types_of(body: bytes) -> list[str]:
    return [e["type"] for e in events_of(body)]


def sdk(handler_body: bytes, *, content_type: str = "text/event-stream") -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=handler_body)

    return openai.OpenAI(api_key="sk-test", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def sdk_final(body: bytes, **params: Any) -> Any:
    """The SDK's own accumulation of our SSE bytes (``client.responses.stream``)."""
    with sdk(body) as client, client.responses.stream(model="gpt-test", input="hi", **params) as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


def sdk_events(body: bytes) -> list[Any]:
    with sdk(body) as client:
        return list(client.responses.create(model="gpt-test", input="hi", stream=True))


# --- parse_request ---


class TestParseRequest:
    def test_a_minimal_request_gets_the_documented_defaults(self) -> None:
        req = parse_request(b'{"model": "gpt-test", "input": "hello", "unknown_field": {"x": 1}}')
        assert (req.model, req.input, req.store, req.tools, req.stream) == ("gpt-test", "hello", True, None, None)

    @pytest.mark.parametrize("body", [b"", b"{", b"[1, 2]"])
    def test_a_body_that_is_not_a_json_object_is_refused(self, body: bytes) -> None:
        with pytest.raises(BadRequest) as info:
            parse_request(body)
        assert info.value.code in {"invalid_json", "invalid_value"}

    def test_json_nested_too_deep_is_a_bad_request(self) -> None:
        with pytest.raises(BadRequest) as info:
            parse_request(b'{"model": "m", "input": [{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}")
        assert info.value.code == "json_too_deep"

    @pytest.mark.parametrize(("field", "value", "param"), [
        ("model", "bad model!", "model"),
        ("input", 3, "input"),
        ("temperature", 2.5, "temperature"),
        ("top_p", -0.1, "top_p"),
        ("max_output_tokens", 0, "max_output_tokens"),
        ("max_output_tokens", 10**9, "max_output_tokens"),
        ("metadata", {f"k{i}": "v" for i in range(17)}, "metadata"),
        ("metadata", {"k": "v" * 513}, "metadata"),
        ("store", "yes", "store"),
        ("reasoning", {"effort": "extreme"}, "reasoning.effort"),
        ("text", {"format": {"type": "json_schema", "schema": {}}}, "text.format.name"),
        ("text", {"format": {"type": "yaml"}}, "text.format.type"),
        ("parallel_tool_calls", "no", "parallel_tool_calls"),
    ])
    def test_invalid_fields_name_their_param(self, field: str, value: Any, param: str) -> None:
        err = refused({field: value})
        assert err.param is not None and err.param.startswith(param)
        assert err.code == "invalid_value" and param.split(".")[0] in err.detail

    def test_missing_input_is_named(self) -> None:
        with pytest.raises(BadRequest) as info:
            parse_request(b'{"model": "m"}')
        assert info.value.param == "input"

    @pytest.mark.parametrize("tool", [
        {"type": "web_search"}, {"type": "web_search_preview"}, {"type": "web_search_2025_08_26"},
        {"type": "file_search", "vector_store_ids": ["vs"]}, {"type": "computer_use_preview"},
        {"type": "code_interpreter", "container": "auto"}, {"type": "image_generation"},
        {"type": "mcp", "server_label": "x"}, {"type": "local_shell"}, {"type": "shell"}, {"type": "apply_patch"},
        {"type": "namespace", "name": "n", "description": "d", "tools": []}, {"type": "tool_search"}, {},
    ])
    def test_built_in_tools_are_refused_naming_the_type(self, tool: dict[str, Any]) -> None:
        err = refused({"tools": [{"type": "function", "name": "f"}, tool]})
        assert (err.code, err.param) == ("unsupported_tool", "tools[1].type")
        assert f"'{tool.get('type')}'" in err.detail

    def test_tools_are_validated_and_their_names_unique(self) -> None:
        assert refused({"tools": [{"type": "function"}]}).param == "tools[0].name"
        assert refused({"tools": [{"type": "function", "name": "f", "parameters": []}]}).param == "tools[0].parameters"
        assert refused({"tools": [{"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "ebnf",
                                                                             "definition": "x"}}]}).param \
            == "tools[0].format.syntax"
        dup = refused({"tools": [{"type": "function", "name": "f"}, {"type": "custom", "name": "f"}]})
        assert (dup.code, dup.param) == ("duplicate_tool_name", "tools[1].name")

    @pytest.mark.parametrize(("choice", "code", "param"), [
        ("sometimes", "invalid_value", "tool_choice"),
        ({"type": "web_search_preview"}, "unsupported_tool_choice", "tool_choice.type"),
        ({"type": "mcp", "server_label": "x"}, "unsupported_tool_choice", "tool_choice.type"),
        ({"type": "function", "name": "missing"}, "unknown_tool", "tool_choice.name"),
        ({"type": "custom", "name": "f"}, "unknown_tool", "tool_choice.name"),  # f is a function tool
        ({"type": "function"}, "invalid_value", "tool_choice.name"),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"},
                                                             {"type": "function", "name": "g"}]},
         "unknown_tool", "tool_choice.tools[1].name"),
        ({"type": "allowed_tools", "mode": "none", "tools": []}, "invalid_value", "tool_choice.mode"),
    ])
    def test_tool_choice_must_name_a_declared_tool(self, choice: Any, code: str, param: str) -> None:
        err = refused({"tools": [{"type": "function", "name": "f"}], "tool_choice": choice})
        assert (err.code, err.param) == (code, param)

    @pytest.mark.parametrize(("item", "code", "param"), [
        ({"type": "item_reference", "id": "msg_1"}, "unsupported_input_item", "input[1].type"),
        ({"type": "web_search_call", "id": "ws", "status": "completed"}, "unsupported_input_item", "input[1].type"),
        ({"type": "computer_call_output", "call_id": "c", "output": {}}, "unsupported_input_item", "input[1].type"),
        ({"type": "mcp_call", "id": "m"}, "unsupported_input_item", "input[1].type"),
        ({"type": "compaction", "encrypted_content": "x"}, "unsupported_input_item", "input[1].type"),
        ({"content": "no role, no type"}, "unsupported_input_item", "input[1].type"),
        ({"role": "user", "content": [{"type": "input_image", "file_id": "file_1", "detail": "auto"}]},
         "unsupported_file_id", "input[1].content[0].image_url"),
        ({"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]},
         "unsupported_file_id", "input[1].content[0].file_data"),
        ({"role": "user", "content": [{"type": "input_file", "file_url": "https://x/y.pdf"}]},
         "unsupported_file_id", "input[1].content[0].file_data"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
         "unsupported_content", "input[1].content[0].type"),
        ({"role": "user", "content": [{"type": "output_text", "text": "x"}]},
         "unsupported_content", "input[1].content[0].type"),
        ({"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x/i.png"}]},
         "unsupported_content", "input[1].content[0].type"),
        ({"role": "user", "content": [{"type": "input_text", "text": 3}]}, "invalid_value", "input[1].content[0].text"),
        ({"role": "tool", "content": "x"}, "invalid_value", "input[1].role"),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "invalid_value", "input[1].call_id"),
        ({"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "file_id": "f"}]},
         "unsupported_file_id", "input[1].output[0].image_url"),
        ({"type": "custom_tool_call", "call_id": "c", "name": "n"}, "invalid_value", "input[1].input"),
        ({"type": "reasoning", "summary": [{"type": "summary_text"}]}, "invalid_value", "input[1].summary[0].text"),
        ("just a string", "invalid_value", "input[1]"),
    ])
    def test_items_chat_cannot_express_are_refused_clearly(self, item: Any, code: str, param: str) -> None:
        err = refused({"input": [{"role": "user", "content": "ok"}, item]})
        assert (err.code, err.param) == (code, param)
        assert "input[1]" in err.detail

    @pytest.mark.parametrize("field", ["conversation", "prompt"])
    def test_features_ignoring_would_change_the_answer_are_refused(self, field: str) -> None:
        err = refused({field: {"id": "x"}})
        assert (err.code, err.param) == ("unsupported_parameter", field)

    @settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(
        st.sampled_from(["model", "input", "tools", "tool_choice", "text", "reasoning", "metadata", "temperature",
                         "max_output_tokens", "store", "instructions", "include", "stream"]),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                         st.sampled_from(["type", "role", "content", "name", "text", "call_id", "output"]), kids,
                         max_size=3), max_leaves=12)))
    def test_any_json_is_accepted_or_a_bad_request_never_a_crash(self, body: dict[str, Any]) -> None:
        try:
            req = parse_request(json.dumps(body).encode())
        except BadRequest as exc:
            assert exc.detail
            return
        items = input_items(req, new_id=new_ids())
        for item in items:
            ITEM.validate_python(item)
        try:
            chat = chat_request(req, history=[], items=items, stream=False)
        except BadRequest as exc:
            assert exc.code == "empty_input"
            return
        assert chat["messages"]


# --- input_items ---


class TestInputItems:
    def test_a_string_is_one_user_message(self) -> None:
        items = input_items(req_of(input="hello"), new_id=new_ids())
        assert items == [{"id": "msg_0001", "type": "message", "role": "user", "status": "completed",
                          "content": [{"type": "input_text", "text": "hello"}]}]
        ITEM.validate_python(items[0])

    def test_shorthand_and_full_items_are_normalised_with_ids(self) -> None:
        req = req_of(input=[
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                         {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
            {"role": "assistant", "content": "earlier answer", "phase": "final_answer"},
            {"type": "message", "role": "assistant", "id": "msg_keep",
             "content": [{"type": "output_text", "text": "a", "annotations": [{"bogus": 1}]},
                         {"type": "input_text", "text": "b"}, {"type": "refusal", "refusal": "no"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAA", "content": None},
            {"type": "reasoning", "id": "rs_keep", "summary": [{"type": "summary_text", "text": "s"}],
             "content": [{"type": "reasoning_text", "text": "t"}]},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "out"},
            {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
            {"type": "custom_tool_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": "ok"},
                        {"type": "input_file", "file_data": "data:application/pdf;base64,AA", "filename": "a.pdf"}]},
        ])
        items = input_items(req, new_id=new_ids())
        assert [i["id"] for i in items] == ["msg_0001", "msg_0002", "msg_0003", "msg_keep", "rs_0004", "rs_keep",
                                            "fc_0005", "fco_0006", "ctc_0007", "ctco_0008"]
        assert items[0]["role"] == "developer" and items[0]["content"] == [{"type": "input_text", "text": "rules"}]
        assert items[1]["content"][1] == {"type": "input_image", "image_url": "data:image/png;base64,AAAA",
                                          "detail": "auto"}
        assert items[2]["content"] == [{"type": "output_text", "text": "earlier answer", "annotations": []}]
        assert items[2]["phase"] == "final_answer"
        assert [p["type"] for p in items[3]["content"]] == ["output_text", "output_text", "refusal"]
        assert items[4] == {"id": "rs_0004", "type": "reasoning", "summary": [], "encrypted_content": "gAAA"}
        assert items[5]["content"] == [{"type": "reasoning_text", "text": "t"}]
        assert items[9]["output"][1] == {"type": "input_file", "file_data": "data:application/pdf;base64,AA",
                                         "filename": "a.pdf"}
        for item in items:
            assert item["type"] == ITEM.validate_python(item).type
            INPUT_ITEM.validate_python(item)


# --- chat_request ---


class TestChatRequest:
    def chat(self, *, history: list[dict] | None = None, streamed: bool = False, **fields: Any) -> dict[str, Any]:
        req = req_of(**fields)
        return chat_request(req, history=history or [], items=input_items(req, new_id=new_ids()), stream=streamed)

    def test_settings_map_to_their_chat_names_and_storage_fields_stay_home(self) -> None:
        body = self.chat(
            instructions="be brief", input="hi", max_output_tokens=50, temperature=0.2, top_p=0.9, user="u1",
            reasoning={"effort": "high", "summary": "auto"}, text={"verbosity": "low"}, store=False,
            metadata={"a": "b"}, previous_response_id="resp_0", include=["reasoning.encrypted_content"],
            truncation="auto", service_tier="flex", prompt_cache_key="pck", safety_identifier="sid", background=False,
            stream=True)
        assert body == {"model": "gpt-test",
                        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                        "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "user": "u1", "reasoning_effort": "high",
                        "verbosity": "low", "prompt_cache_key": "pck", "safety_identifier": "sid"}
        assert self.chat(streamed=True)["stream_options"] == {"include_usage": True}
        assert "stream" not in self.chat(stream=True) and self.chat(streamed=True)["stream"] is True

    @pytest.mark.parametrize(("fmt", "expected"), [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "json_schema", "name": "point", "schema": {"type": "object"}, "strict": True, "description": "d"},
         {"type": "json_schema", "json_schema": {"name": "point", "schema": {"type": "object"}, "strict": True,
                                                 "description": "d"}}),
        ({"type": "json_schema", "name": "p", "schema": {}}, {"type": "json_schema", "json_schema": {"name": "p",
                                                                                                    "schema": {}}}),
    ])
    def test_text_format_becomes_response_format(self, fmt: dict[str, Any], expected: dict | None) -> None:
        assert self.chat(text={"format": fmt}).get("response_format") == expected

    def test_tools_and_tool_choice(self) -> None:
        tools = [{"type": "function", "name": "get", "description": "fetch", "parameters": {"type": "object"},
                  "strict": True},
                 {"type": "function", "name": "now"},
                 {"type": "custom", "name": "apply_patch", "description": "patch files",
                  "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
                 {"type": "custom", "name": "free"}]
        body = self.chat(tools=tools, tool_choice="required", parallel_tool_calls=False)
        assert body["tools"][0] == {"type": "function", "function": {
            "name": "get", "description": "fetch", "parameters": {"type": "object"}, "strict": True}}
        assert body["tools"][1]["function"] == {"name": "now", "parameters": {"type": "object", "properties": {}}}
        patch = body["tools"][2]["function"]
        assert patch["parameters"]["required"] == ["input"]
        assert patch["parameters"]["properties"]["input"]["type"] == "string"
        assert "start: /.+/" in patch["parameters"]["properties"]["input"]["description"]
        assert "grammar" not in body["tools"][3]["function"]["parameters"]["properties"]["input"]["description"]
        assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
        for choice in ({"type": "function", "name": "get"}, {"type": "custom", "name": "apply_patch"}):
            name = choice["name"]
            assert self.chat(tools=tools, tool_choice=choice)["tool_choice"] == {"type": "function",
                                                                                 "function": {"name": name}}
        allowed = self.chat(tools=tools, tool_choice={"type": "allowed_tools", "mode": "required", "tools": [
            {"type": "function", "name": "now"}, {"type": "custom", "name": "free"}]})
        assert [t["function"]["name"] for t in allowed["tools"]] == ["now", "free"]
        assert allowed["tool_choice"] == "required"
        CHAT_STREAMING.validate_python(body | {"stream": True})

    def test_no_tools_means_no_tool_choice(self) -> None:
        body = self.chat(tool_choice="none", parallel_tool_calls=True, tools=[])
        assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()
        only_tools = self.chat(tools=[{"type": "function", "name": "f"}])
        assert "tools" in only_tools and not {"tool_choice", "parallel_tool_calls"} & only_tools.keys()

    def test_items_become_messages(self) -> None:
        history = [
            {"id": "msg_1", "type": "message", "role": "user", "status": "completed",
             "content": [{"type": "input_text", "text": "first"}]},
            {"id": "rs_1", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hm"}]},
            {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "let me look", "annotations": []}]},
            {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "get", "arguments": '{"a":1}'},
            {"id": "rs_2", "type": "reasoning", "summary": []},
            {"id": "ctc_1", "type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "P"},
        ]
        body = self.chat(history=history, input=[
            {"type": "function_call_output", "call_id": "c1",
             "output": [{"type": "input_text", "text": "got "}, {"type": "input_text", "text": "it"},
                        {"type": "input_image", "image_url": "https://x/i.png", "detail": "original"}]},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "patched"},
            {"type": "function_call", "call_id": "c3", "name": "now", "arguments": ""},
            {"type": "function_call_output", "call_id": "c3", "output": "noon"},
            {"role": "developer", "content": "dev note"},
            {"role": "user", "content": [{"type": "input_text", "text": "see"},
                                         {"type": "input_image", "image_url": "https://x/j.png", "detail": "low"},
                                         {"type": "input_file", "file_data": "data:x", "filename": "f.pdf"}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "cannot"}]},
        ])
        assert body["messages"] == [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "let me look", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a":1}'}},
                {"id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": '{"input":"P"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "got it"},
            {"role": "tool", "tool_call_id": "c2", "content": "patched"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png",
                                                                             "detail": "high"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c3", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c3", "content": "noon"},
            {"role": "system", "content": "dev note"},
            {"role": "user", "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": "https://x/j.png", "detail": "low"}},
                {"type": "file", "file": {"file_data": "data:x", "filename": "f.pdf"}}]},
            {"role": "assistant", "content": "cannot"},
        ]
        CHAT_STREAMING.validate_python(body | {"stream": True})

    def test_an_assistant_message_with_empty_text_before_calls_has_null_content(self) -> None:
        msgs = chat_messages([
            {"type": "message", "role": "assistant", "content": []},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": [
                {"type": "input_image", "image_url": "https://x/i.png"}]},
            {"type": "unknown_future_item"},
        ])
        assert msgs[0] == {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
        assert msgs[1] == {"role": "tool", "tool_call_id": "c", "content": ""}
        assert msgs[2] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}]}

    def test_history_in_shorthand_forms_still_maps(self) -> None:
        msgs = chat_messages([{"role": "user", "content": "plain"}, {"role": "assistant", "content": "said"},
                              {"role": "user", "content": [{"type": "input_file", "file_data": "data:x"}]}])
        assert msgs == [{"role": "user", "content": "plain"}, {"role": "assistant", "content": "said"},
                        {"role": "user", "content": [{"type": "file", "file": {"file_data": "data:x"}}]}]

    def test_empty_input_without_instructions_is_refused(self) -> None:
        with pytest.raises(BadRequest) as info:
            self.chat(input=[])
        assert (info.value.code, info.value.param) == ("empty_input", "input")
        assert self.chat(input=[], instructions="x")["messages"] == [{"role": "system", "content": "x"}]

    def test_the_gateway_accepts_what_it_sends(self) -> None:
        body = self.chat(input=[{"role": "user", "content": "x"}], max_output_tokens=5, streamed=True)
        parsed = parse_chat("chat.completions", msgspec.json.encode(body))
        assert (parsed.stream, parsed.wants_usage, parsed.max_tokens) == (True, True, 5)


# --- the Codex journey ---

CODEX_PATCH_GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
CODEX = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex, a coding agent.",
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the failing test"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "**Inspecting**"}], "content": None,
         "encrypted_content": "gAAAAABo-opaque"},
        {"type": "function_call", "name": "shell", "arguments": '{"command":["ls"]}', "call_id": "call_a"},
        {"type": "function_call_output", "call_id": "call_a", "output": "src\ntests\n"},
        {"type": "reasoning", "summary": [], "content": None, "encrypted_content": "gAAAAABo-more"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Patching now."}]},
        {"type": "custom_tool_call", "status": "completed", "call_id": "call_b", "name": "apply_patch",
         "input": "*** Begin Patch\n*** End Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_b", "output": "Success."},
    ],
    "tools": [
        {"type": "function", "name": "shell", "description": "Runs a shell command", "strict": False,
         "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                        "required": ["command"], "additionalProperties": False}},
        {"type": "function", "name": "update_plan", "description": "Updates the plan", "strict": False,
         "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object"}}}}},
        {"type": "custom", "name": "apply_patch", "description": "Use apply_patch to edit files.",
         "format": {"type": "grammar", "syntax": "lark", "definition": CODEX_PATCH_GRAMMAR}},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199c0a1-conversation",
    "text": {"verbosity": "medium"},
}


class TestCodex:
    def test_a_codex_turn_parses_translates_and_a_chat_backend_accepts_it(self) -> None:
        req = parse_request(json.dumps(CODEX).encode())
        assert custom_tool_names(req) == {"apply_patch"}
        items = input_items(req, new_id=new_ids())
        for item in items:
            ITEM.validate_python(item)
        body = chat_request(req, history=[], items=items, stream=bool(req.stream))
        assert set(body) <= CHAT_KEYS
        CHAT_STREAMING.validate_python(body)
        parse_chat("chat.completions", msgspec.json.encode(body))
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["system", "system", "user", "user", "assistant", "tool", "assistant", "tool"]
        assert body["messages"][4]["tool_calls"][0]["id"] == "call_a"
        patch = body["messages"][6]
        assert patch["content"] == "Patching now."
        assert json.loads(patch["tool_calls"][0]["function"]["arguments"]) == {
            "input": "*** Begin Patch\n*** End Patch\n"}
        assert (body["tool_choice"], body["parallel_tool_calls"], body["reasoning_effort"]) == ("auto", False,
                                                                                                 "medium")
        assert body["stream_options"] == {"include_usage": True}
        assert "gAAAA" not in json.dumps(body)  # encrypted reasoning is for OpenAI's models alone

    def test_the_codex_answer_streams_to_the_sdk_as_a_custom_tool_call(self) -> None:
        req = parse_request(json.dumps(CODEX).encode())
        patch = "*** Begin Patch\n*** Add File: a.txt\n+hello \"x\"\n*** End Patch\n"
        args = json.dumps({"input": patch})
        _, body = run_stream(req, [
            chunk({"role": "assistant", "reasoning_content": "Need to add a file."}),
            tool_chunk(0, id="call_p", name="apply_patch", args=""),
            *[tool_chunk(0, args=args[i:i + 7]) for i in range(0, len(args), 7)],
            chunk(finish="tool_calls"), USAGE_CHUNK])
        types = types_of(body)
        assert "response.custom_tool_call_input.done" in types
        assert "response.function_call_arguments.delta" not in types
        final = sdk_final(body)
        assert [o.type for o in final.output] == ["reasoning", "custom_tool_call"]
        assert (final.output[1].name, final.output[1].call_id, final.output[1].input) == ("apply_patch", "call_p",
                                                                                          patch)


# --- response_object and output_of_completion ---


class TestResponseObject:
    def test_defaults_echo_and_validate(self) -> None:
        obj = response_object(req_of(), response_id="resp_1", created_at=1, status="in_progress", output=[],
                              usage=None)
        resp = valid_response(obj)
        assert (resp.parallel_tool_calls, resp.tool_choice, resp.tools, resp.metadata) == (True, "auto", [], {})
        assert (obj["text"], obj["truncation"], obj["store"]) == ({"format": {"type": "text"}}, "disabled", True)
        assert "usage" not in obj and "user" not in obj  # optional, not nullable, in OpenAI's document
        assert obj["reasoning"] == {"effort": None, "summary": None}

    def test_settings_are_echoed(self) -> None:
        tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
                 {"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "regex", "definition": "x"}}]
        req = req_of(instructions="sys", tools=tools, tool_choice={"type": "custom", "name": "c"},
                     parallel_tool_calls=False, temperature=0.5, top_p=0.5, max_output_tokens=99,
                     metadata={"k": "v"}, previous_response_id="resp_0", store=False, user="u",
                     reasoning={"effort": "low", "generate_summary": "concise"},
                     text={"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}},
                           "verbosity": "high"})
        obj = response_object(req, response_id="resp_1", created_at=5, status="completed", output=[],
                              usage=USAGE, completed_at=6)
        resp = valid_response(obj)
        assert obj["tools"] == tools and obj["tool_choice"] == {"type": "custom", "name": "c"}
        assert (resp.instructions, resp.temperature, resp.top_p, resp.max_output_tokens, resp.user) == (
            "sys", 0.5, 0.5, 99, "u")
        assert (resp.parallel_tool_calls, resp.store, resp.previous_response_id, resp.completed_at) == (
            False, False, "resp_0", 6)
        assert obj["reasoning"] == {"effort": "low", "summary": "concise"}
        assert obj["text"] == {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}},
                               "verbosity": "high"}
        assert resp.usage is not None and resp.usage.total_tokens == 150
        assert (resp.usage.input_tokens_details.cached_tokens, resp.usage.output_tokens_details.reasoning_tokens) \
            == (100, 7)

    def test_incomplete_and_failed(self) -> None:
        req = req_of()
        inc = valid_response(response_object(req, response_id="r", created_at=1, status="incomplete", output=[],
                                             usage=USAGE, incomplete_reason="max_output_tokens"))
        assert inc.incomplete_details is not None and inc.incomplete_details.reason == "max_output_tokens"
        failed = valid_response(response_object(req, response_id="r", created_at=1, status="failed", output=[],
                                                usage=None, error={"code": "server_error", "message": "boom"}))
        assert failed.error is not None and (failed.error.code, failed.error.message) == ("server_error", "boom")
        assert failed.incomplete_details is None

    def test_the_sdk_reads_a_whole_response(self) -> None:
        output, status, _ = output_of_completion(completion("Hello there."), new_id=new_ids())
        obj = response_object(req_of(), response_id="resp_9", created_at=1, status=status, output=output,
                              usage=USAGE)
        with sdk(msgspec.json.encode(obj), content_type="application/json") as client:
            resp = client.responses.create(model="gpt-test", input="hi")
        assert (resp.id, resp.output_text, resp.usage.output_tokens if resp.usage else None) == (
            "resp_9", "Hello there.", 30)


def completion(content: str | None = None, *, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content, **message}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


class TestOutputOfCompletion:
    def test_reasoning_text_refusal_and_calls_in_order(self) -> None:
        chat = completion("Answer.", finish="tool_calls", reasoning_content="thinking", refusal="partly not",
                          tool_calls=[
                              {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
                              {"id": "call_2", "type": "function",
                               "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}},
                              {"type": "function", "function": {"name": "apply_patch", "arguments": "raw text"}}])
        output, status, reason = output_of_completion(chat, new_id=new_ids(), custom_tools=frozenset({"apply_patch"}))
        assert (status, reason) == ("completed", None)
        assert [o["type"] for o in output] == ["reasoning", "message", "function_call", "custom_tool_call",
                                               "custom_tool_call"]
        assert output[0]["content"] == [{"type": "reasoning_text", "text": "thinking"}]
        assert [p["type"] for p in output[1]["content"]] == ["output_text", "refusal"]
        assert output[2] | {} == {"id": "fc_0003", "type": "function_call", "call_id": "call_1", "name": "f",
                                  "arguments": '{"x":1}', "status": "completed"}
        assert output[3]["input"] == "*** Begin Patch"
        assert (output[4]["input"], output[4]["call_id"]) == ("raw text", "call_0006")
        resp = valid_response(response_object(req_of(), response_id="r", created_at=1, status=status,
                                              output=output, usage=USAGE))
        assert resp.output_text == "Answer."

    @pytest.mark.parametrize(("finish", "status", "reason"), [
        ("stop", "completed", None), ("tool_calls", "completed", None), ("function_call", "completed", None),
        ("length", "incomplete", "max_output_tokens"), ("content_filter", "incomplete", "content_filter"),
        (None, "completed", None),
    ])
    def test_finish_reasons(self, finish: str | None, status: str, reason: str | None) -> None:
        output, got_status, got_reason = output_of_completion(completion("x", finish=finish), new_id=new_ids())  # type: ignore[arg-type]
        assert (got_status, got_reason) == (status, reason)
        assert output[0]["status"] == ("completed" if status == "completed" else "incomplete")

    @pytest.mark.parametrize("chat", [
        {}, {"choices": []}, {"choices": [{"index": 0, "message": None, "finish_reason": None}]},
        completion(None), completion(""),
    ])
    def test_robust_to_missing_and_empty_fields(self, chat: dict[str, Any]) -> None:
        assert output_of_completion(chat, new_id=new_ids()) == ([], "completed", None)

    def test_other_forms_backends_answer_with(self) -> None:
        chat = completion([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], reasoning="why",
                          function_call={"name": "legacy", "arguments": "{}"})
        output, _, _ = output_of_completion(chat, new_id=new_ids())
        assert [o["type"] for o in output] == ["reasoning", "message", "function_call"]
        assert output[1]["content"][0]["text"] == "ab" and output[2]["name"] == "legacy"
        chat["choices"].insert(0, {"index": 1, "message": {"content": "other choice"}})
        assert output_of_completion(chat, new_id=new_ids())[0][1]["content"][0]["text"] == "ab"


# --- ResponseStream ---

TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
               "response.output_text.done", "response.content_part.done", "response.output_item.done",
               "response.completed"]


class TestResponseStream:
    def test_text_in_openai_order_and_through_the_sdk(self) -> None:
        stream, body = run_stream(req_of(), [chunk({"role": "assistant", "content": ""}),
                                             chunk({"content": "Hello"}), chunk({"content": ", world"}),
                                             chunk(finish="stop"), USAGE_CHUNK])
        events = events_of(body)
        assert [e["type"] for e in events] == TEXT_EVENTS
        assert events[0]["response"]["status"] == "in_progress" and "usage" not in events[0]["response"]
        assert events[2]["item"] == {"id": "msg_0001", "type": "message", "status": "in_progress",
                                     "role": "assistant", "content": []}
        assert events[4] | {} == {"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_0001",
                                  "output_index": 0, "content_index": 0, "delta": "Hello", "logprobs": []}
        assert events[6]["text"] == "Hello, world" and events[8]["item"]["status"] == "completed"
        assert stream.response == events[-1]["response"]
        valid_response(stream.response)
        final = sdk_final(body)
        assert (final.output_text, final.status, final.usage.input_tokens if final.usage else None) == (
            "Hello, world", "completed", 120)
        assert final.usage is not None and final.usage.total_tokens == 150
        assert [e.type for e in sdk_events(body)] == TEXT_EVENTS

    def test_reasoning_text_and_parallel_calls(self) -> None:
        req = req_of(tools=[{"type": "function", "name": "get", "parameters": {"type": "object"}},
                            {"type": "function", "name": "put"}])
        stream, body = run_stream(req, [
            chunk({"role": "assistant", "reasoning_content": "Let me "}), chunk({"reasoning_content": "think."}),
            chunk({"content": "Calling tools."}),
            tool_chunk(0, id="call_1", name="get", args=""), tool_chunk(0, args='{"k":'), tool_chunk(0, args='"a"}'),
            tool_chunk(1, id="call_2", name="put", args='{"v":'), tool_chunk(1, args="2}"),
            chunk(finish="tool_calls"), USAGE_CHUNK])
        types = types_of(body)
        assert types == [
            "response.created", "response.in_progress",
            "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
            "response.reasoning_text.delta", "response.reasoning_text.done", "response.content_part.done",
            "response.output_item.done",
            *TEXT_EVENTS[2:5], *TEXT_EVENTS[6:9],
            "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.delta", "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added", "response.function_call_arguments.delta",
            "response.function_call_arguments.delta", "response.function_call_arguments.done",
            "response.output_item.done", "response.completed"]
        output = stream.response["output"]
        assert output[0]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
        final = sdk_final(body)
        assert final.output_text == "Calling tools."
        calls = [(o.call_id, o.name, json.loads(o.arguments), o.status) for o in final.output
                 if o.type == "function_call"]
        assert calls == [("call_1", "get", {"k": "a"}, "completed"), ("call_2", "put", {"v": 2}, "completed")]

    def test_text_after_a_call_and_a_refusal_open_new_items_and_parts(self) -> None:
        stream, body = run_stream(req_of(), [
            tool_chunk(0, id="call_1", name="f", args="{}"), chunk({"content": "done"}),
            chunk({"refusal": "but not"}), chunk({"refusal": " that"}), chunk({"content": "!"}),
            chunk(finish="stop")])
        events = events_of(body)
        parts = [(e["type"], e.get("content_index")) for e in events if "content_part" in e["type"]]
        assert parts == [("response.content_part.added", 0), ("response.content_part.done", 0),
                         ("response.content_part.added", 1), ("response.content_part.done", 1),
                         ("response.content_part.added", 2), ("response.content_part.done", 2)]
        assert [e["refusal"] for e in events if e["type"] == "response.refusal.done"] == ["but not that"]
        message = stream.response["output"][1]
        assert [p.get("text", p.get("refusal")) for p in message["content"]] == ["done", "but not that", "!"]
        final = sdk_final(body)
        assert final.output_text == "done!"
        assert final.output[1].content[1].type == "refusal"

    def test_length_ends_incomplete(self) -> None:
        _, body = run_stream(req_of(max_output_tokens=3), [chunk({"content": "cut"}), chunk(finish="length")])
        events = events_of(body)
        assert events[-1]["type"] == "response.incomplete"
        assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
        assert events[-2]["item"]["status"] == "incomplete"
        last = sdk_events(body)[-1]
        assert last.type == "response.incomplete" and last.response.output_text == "cut"
        assert last.response.incomplete_details.reason == "max_output_tokens"

    def test_content_filter_ends_incomplete(self) -> None:
        _, body = run_stream(req_of(), [chunk({"content": "x"}, finish="content_filter")])
        assert events_of(body)[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}

    def test_fail_keeps_the_output_so_far(self) -> None:
        stream, body = run_stream(req_of(tools=[{"type": "function", "name": "f"}]), [
            chunk({"content": "partial"}), tool_chunk(0, id="call_1", name="f", args='{"a"')], fail="upstream died")
        events = events_of(body)
        assert events[-1]["type"] == "response.failed"
        failed = events[-1]["response"]
        assert failed["error"] == {"code": "server_error", "message": "upstream died"}
        assert failed["status"] == "failed" and "usage" not in failed
        assert failed["output"][0]["content"][0]["text"] == "partial"
        assert (failed["output"][1]["arguments"], failed["output"][1]["status"]) == ('{"a"', "incomplete")
        assert stream.response == failed
        last = sdk_events(body)[-1]
        assert last.type == "response.failed" and last.response.error.message == "upstream died"

    def test_fail_with_an_open_message_marks_it_incomplete(self) -> None:
        stream = ResponseStream(req_of(), response_id="r", created_at=1, new_id=new_ids())
        stream.start()
        stream.chunk(chunk({"content": "half"}))
        events = events_of(b"".join(stream.fail("rate limited", "rate_limit_exceeded",
                                                usage=Usage(input_tokens=1, output_tokens=1))), first=5)
        assert events[0]["response"]["output"][0]["status"] == "incomplete"
        assert events[0]["response"]["usage"]["total_tokens"] == 2

    def test_the_response_mid_stream_shows_the_output_so_far(self) -> None:
        stream = ResponseStream(req_of(), response_id="r", created_at=1, new_id=new_ids())
        stream.start()
        stream.chunk(chunk({"reasoning_content": "hmm"}))
        assert stream.response["output"][0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
        stream.chunk(chunk({"content": "so"}))
        stream.chunk(chunk({"content": " far"}))
        now = stream.response
        assert (now["status"], now.get("usage"), now["output"][1]["content"][0]["text"]) == ("in_progress", None,
                                                                                              "so far")
        valid_response(now)
        now["output"].clear()  # a copy: the stream's own state is untouched
        failed = events_of(b"".join(stream.fail("gone")), first=12)[0]["response"]
        assert [o.get("status") for o in failed["output"]] == [None, "incomplete"]

    def test_nothing_after_the_end(self) -> None:
        stream, _ = run_stream(req_of(), [chunk({"content": "a"}, finish="stop")])
        assert stream.chunk(chunk({"content": "more"})) == []
        assert stream.finish(USAGE) == [] and stream.fail("x") == []
        assert stream.response["output"][0]["content"][0]["text"] == "a"

    def test_an_empty_completion_completes_with_no_output(self) -> None:
        _, body = run_stream(req_of(), [chunk({"role": "assistant"}), chunk(finish="stop"), USAGE_CHUNK])
        assert types_of(body) == ["response.created", "response.in_progress", "response.completed"]
        assert sdk_final(body).output == []

    @pytest.mark.parametrize("odd", [
        {"choices": None}, {"choices": [None]}, {"choices": [{"index": 1, "delta": {"content": "other"}}]},
        {"choices": [{"index": 0, "delta": None}]}, {"choices": [{"delta": {"content": None, "tool_calls": None,
                                                                           "reasoning_content": None}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [None, "x"], "content": 5}}]}, {"usage": None},
    ])
    def test_odd_chunks_produce_nothing(self, odd: dict[str, Any]) -> None:
        stream = ResponseStream(req_of(), response_id="r", created_at=1, new_id=new_ids())
        stream.start()
        assert stream.chunk(odd) == []

    def test_calls_without_index_or_id_and_late_fragments(self) -> None:
        stream, body = run_stream(req_of(), [
            chunk({"tool_calls": [{"id": "call_a", "function": {"name": "a", "arguments": "{"}}]}),
            chunk({"tool_calls": [{"function": {"arguments": "}"}}]}),
            chunk({"tool_calls": [{"function": {"name": "b", "arguments": "[]"}}]}),  # no id: one is made
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": " "}}]}),  # late: call a is closed
            chunk(finish="tool_calls")])
        events = events_of(body)
        calls = [o for o in stream.response["output"]]
        assert [(c["call_id"], c["name"], c["arguments"]) for c in calls] == [("call_a", "a", "{} "),
                                                                             ("call_0003", "b", "[]")]
        assert [e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"] == [
            "{}", "[]"]

    def test_a_custom_call_whose_arguments_are_not_the_schema_keeps_the_text(self) -> None:
        req = req_of(tools=[{"type": "custom", "name": "free"}])
        stream, body = run_stream(req, [tool_chunk(0, id="c", name="free"), tool_chunk(0, args="plain"),
                                        tool_chunk(1, id="d", name="free"), chunk(finish="tool_calls")])
        events = events_of(body)
        assert [e["input"] for e in events if e["type"] == "response.custom_tool_call_input.done"] == ["plain", ""]
        assert [o["input"] for o in stream.response["output"]] == ["plain", ""]
        assert [o.input for o in sdk_final(body).output] == ["plain", ""]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(reasoning=st.lists(st.text(min_size=1, max_size=8), max_size=3),
           text=st.lists(st.text(min_size=1, max_size=8), max_size=5),
           calls=st.lists(st.lists(st.text(min_size=1, max_size=6), max_size=4), max_size=3),
           finish=st.sampled_from(["stop", "tool_calls", "length", None]))
    def test_any_chunking_reaches_the_sdk_intact(self, reasoning: list[str], text: list[str],
                                                 calls: list[list[str]], finish: str | None) -> None:
        chunks = [chunk({"reasoning_content": r}) for r in reasoning] + [chunk({"content": t}) for t in text]
        for i, fragments in enumerate(calls):
            chunks.append(tool_chunk(i, id=f"call_{i}", name=f"tool_{i}", args=""))
            chunks += [tool_chunk(i, args=f) for f in fragments]
        chunks.append(chunk(finish=finish))
        stream, body = run_stream(req_of(), chunks)
        events = events_of(body)
        response = stream.response
        valid_response(response)
        assert response == events[-1]["response"]
        for item in response["output"]:
            ITEM.validate_python(item | {"status": item.get("status", "completed")})
        if finish == "length":
            last = sdk_events(body)[-1]
            assert last.type == "response.incomplete"
            final = last.response
        else:
            final = sdk_final(body)
        assert final.output_text == "".join(text)
        assert [o.arguments for o in final.output if o.type == "function_call"] == ["".join(f) for f in calls]
        got_reasoning = [c.text for o in final.output if o.type == "reasoning" for c in o.content or ()]
        assert got_reasoning == (["".join(reasoning)] if reasoning else [])
        assert final.usage is not None and final.usage.output_tokens == USAGE.output_tokens

