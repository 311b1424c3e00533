"""OpenAI's Responses API through the running streamer, with the official ``openai`` SDK: plain, streamed,
function tools across turns with ``previous_response_id``, a json_schema format, stored responses, and a
captured Codex CLI request; the upstream is a chat-completions fake, so every byte was translated."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent

from e2e.inference.conftest import Running, eventually, with_thread
from e2e.inference.sse import post_sse
from fake_upstream import AGENT_ARGUMENTS, AGENT_JSON

pytestmark = pytest.mark.e2e

_events = pydantic.TypeAdapter(ResponseStreamEvent)
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                           "unit": {"type": "string", "enum": ["celsius"]}},
                          "required": ["location", "unit"], "additionalProperties": False},
           "strict": True}


def client(running: Running, key: str = "member") -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key=running.keys[key], max_retries=0, timeout=60)


def sse(running: Running, body: dict[str, Any], key: str = "member",
        headers: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """POST /v1/responses and parse the event stream as it came over the wire."""
    return post_sse(running.base_url + "/responses", body,
                    {"authorization": "Bearer " + running.keys[key], **(headers or {})})


def assert_valid_sequence(events: list[dict[str, Any]]) -> None:
    """Every event validates against the SDK's types, numbered 0, 1, 2, ... in OpenAI's order."""
    for event in events:
        _events.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[1]["type"] == "response.in_progress"
    assert events[-1]["type"] in {"response.completed", "response.incomplete", "response.failed"}


class TestCreate:
    def test_plain_text(self, running: Running) -> None:
        r = client(running).responses.create(model="test/chat", input="Say hello.")
        assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
        assert r.output_text == "Hello from fake"
        assert r.model == "test/chat"
        assert r.usage is not None
        assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (7, 3, 10)
        sent = running.upstreams["a"].requests[-1]
        assert [m["role"] for m in sent["messages"]] == ["user"]
        assert "Say hello." in json.dumps(sent["messages"][0]["content"])
        assert "store" not in sent and "input" not in sent  # the upstream got a chat request, nothing else

    def test_instructions_become_the_system_message(self, running: Running) -> None:
        client(running).responses.create(model="test/chat", instructions="Be brief.", input="Hi",
                                         max_output_tokens=20, temperature=0.5)
        sent = running.upstreams["a"].requests[-1]
        assert sent["messages"][0]["role"] in {"system", "developer"}
        assert "Be brief." in json.dumps(sent["messages"][0])
        assert sent["max_tokens"] == 20 and sent["temperature"] == 0.5

    def test_stream_with_the_sdk_helper(self, running: Running) -> None:
        seen: list[str] = []
        with client(running).responses.stream(model="test/chat", input="Say hello.") as stream:
            for event in stream:
                seen.append(event.type)
            final = stream.get_final_response()
        assert final.output_text == "Hello from fake"
        assert final.usage is not None and final.usage.total_tokens == 10
        assert seen[:2] == ["response.created", "response.in_progress"]
        assert seen[-1] == "response.completed"
        assert "response.output_text.delta" in seen and "response.output_text.done" in seen

    def test_every_streamed_event_validates_and_is_numbered(self, running: Running) -> None:
        status, events = sse(running, {"model": "test/chat", "input": "Say hello.", "stream": True})
        assert status == 200
        assert_valid_sequence(events)
        types = [e["type"] for e in events]
        assert types == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", *["response.output_text.delta"] * 3,
                         "response.output_text.done", "response.content_part.done", "response.output_item.done",
                         "response.completed"]
        done = events[-1]["response"]
        assert done["usage"]["input_tokens"] == 7 and done["usage"]["output_tokens"] == 3

    def test_json_schema_format(self, running: Running) -> None:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
                  "additionalProperties": False}
        r = client(running).responses.create(
            model="test/agent", input="What is the answer?",
            text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}})
        assert json.loads(r.output_text) == json.loads(AGENT_JSON)
        sent = running.upstreams["a"].requests[-1]
        assert sent["response_format"]["type"] == "json_schema"
        assert sent["response_format"]["json_schema"]["schema"] == schema
        assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"


class TestFunctionToolsAcrossTurns:
    def test_two_turns_with_previous_response_id(self, running: Running) -> None:
        c = client(running)
        first = c.responses.create(model="test/agent", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
        calls = [item for item in first.output if item.type == "function_call"]
        assert len(calls) == 1
        call = calls[0]
        assert call.name == "get_weather" and json.loads(call.arguments) == json.loads(AGENT_ARGUMENTS)
        second = c.responses.create(
            model="test/agent", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}])
        assert second.output_text == "The tool said: 18C and sunny"
        assert second.previous_response_id == first.id
        # The backend keeps no state: the gateway sent it the whole conversation, rebuilt from storage.
        sent = running.upstreams["a"].requests[-1]["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == call.call_id
        assert sent[2]["tool_call_id"] == call.call_id

    def test_streamed_function_call_arguments(self, running: Running) -> None:
        status, events = sse(running, {"model": "test/agent", "input": "Weather?", "tools": [WEATHER],
                                       "stream": True})
        assert status == 200
        assert_valid_sequence(events)
        deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
        assert len(deltas) == 3 and "".join(deltas) == AGENT_ARGUMENTS
        done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert len(done) == 1 and done[0]["arguments"] == AGENT_ARGUMENTS
        added = [e for e in events if e["type"] == "response.output_item.added"]
        assert added[-1]["item"]["type"] == "function_call" and added[-1]["item"]["name"] == "get_weather"

    def test_a_streamed_turn_can_be_continued(self, running: Running) -> None:
        c = client(running)
        with c.responses.stream(model="test/agent", input="Weather?", tools=[WEATHER]) as s:  # type: ignore[list-item]
            first = s.get_final_response()
        call = next(item for item in first.output if item.type == "function_call")
        second = c.responses.create(model="test/agent", previous_response_id=first.id,
                                    input=[{"type": "function_call_output", "call_id": call.call_id,
                                            "output": "cold"}])
        assert second.output_text == "The tool said: cold"


class TestStoredResponses:
    def test_retrieve_list_input_items_and_delete(self, running: Running) -> None:
        c = client(running)
        made = c.responses.create(model="test/chat", input="Keep me.")
        got = c.responses.retrieve(made.id)
        assert got.id == made.id and got.output_text == "Hello from fake"
        items = c.responses.input_items.list(made.id)
        texts = [part.text for item in items.data if item.type == "message"
                 for part in item.content if part.type == "input_text"]
        assert texts == ["Keep me."]
        c.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            c.responses.create(model="test/chat", input="again", previous_response_id=made.id)

    def test_another_orgs_response_is_not_found(self, running: Running) -> None:
        made = client(running).responses.create(model="test/chat", input="Mine.")
        other = client(running, "restricted-org")
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model="test/chat", input="steal", previous_response_id=made.id)
        assert client(running).responses.retrieve(made.id).id == made.id  # still there for its owner

    def test_store_false_keeps_nothing(self, running: Running) -> None:
        made = client(running).responses.create(model="test/chat", input="Forget me.", store=False)
        assert made.store is False
        with pytest.raises(openai.NotFoundError):
            client(running).responses.retrieve(made.id)


class TestRefusals:
    def test_a_built_in_tool_is_a_400_naming_it(self, running: Running) -> None:
        with pytest.raises(openai.BadRequestError) as err:
            client(running).responses.create(model="test/chat", input="x",
                                             tools=[{"type": "web_search_preview"}])  # type: ignore[list-item]
        assert "web_search_preview" in str(err.value)
        body = err.value.response.json()
        assert body["error"]["param"] == "tools[0].type"
        assert body["status"] == 400 and body["type"].startswith("https://")  # still a problem document

    def test_an_unknown_model_is_a_404(self, running: Running) -> None:
        with pytest.raises(openai.NotFoundError):
            client(running).responses.create(model="nope/none", input="x")

    def test_without_a_key_it_is_a_401(self, running: Running) -> None:
        r = httpx.post(running.base_url + "/responses", json={"model": "test/chat", "input": "x"})
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


CODEX_REQUEST: dict[str, Any] = {
    "model": "test/agent",
    "instructions": "You are a coding agent running in the Codex CLI, a terminal-based coding assistant.",
    "input": [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "<environment_context>\n  <cwd>/home/dev/app</cwd>\n  "
                                           "<approval_policy>on-request</approval_policy>\n</environment_context>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files."}]},
        {"type": "reasoning", "id": "rs_0a1b", "summary": [{"type": "summary_text", "text": "Listing files"}],
         "content": None, "encrypted_content": "gAAAAABo-opaque-reasoning-state"},
        {"type": "function_call", "id": "fc_0a1b", "name": "shell", "call_id": "call_Kx1",
         "arguments": "{\"command\":[\"bash\",\"-lc\",\"ls\"],\"workdir\":\"/home/dev/app\"}"},
        {"type": "function_call_output", "call_id": "call_Kx1",
         "output": "{\"output\":\"README.md\\nsrc\\n\",\"metadata\":{\"exit_code\":0,\"duration_seconds\":0.1}}"},
    ],
    "tools": [
        {"type": "function", "name": "shell", "description": "Runs a shell command and returns its output.",
         "strict": False, "parameters": {"type": "object", "properties": {
             "command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"},
             "timeout_ms": {"type": "number"}}, "required": ["command"], "additionalProperties": False}},
        {"type": "function", "name": "update_plan", "description": "Updates the task plan.", "strict": False,
         "parameters": {"type": "object", "properties": {"explanation": {"type": "string"}, "plan": {
             "type": "array", "items": {"type": "object", "properties": {
                 "step": {"type": "string"}, "status": {"type": "string"}}, "required": ["step", "status"],
                 "additionalProperties": False}}}, "required": ["plan"], "additionalProperties": False}},
        {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
         "format": {"type": "grammar", "syntax": "lark",
                    "definition": "start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\n"}},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "0199e0c4-5f0e-7c11-9d3a-2b8f0a6c1e77",
    "text": {"verbosity": "medium"},
}


class TestCodexRequest:
    def test_a_captured_codex_request_round_trips(self, running: Running) -> None:
        status, events = sse(running, CODEX_REQUEST)
        assert status == 200, events
        assert_valid_sequence(events)
        final = events[-1]["response"]
        assert final["status"] == "completed"
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text.startswith("The tool said: ")
        sent = running.upstreams["a"].requests[-1]
        roles = [m["role"] for m in sent["messages"]]
        assert roles[0] in {"system", "developer"} and roles[-2:] == ["assistant", "tool"]
        names = [t["function"]["name"] for t in sent["tools"]]
        assert names == ["shell", "update_plan", "apply_patch"]  # the custom tool became a function tool
        assert sent["parallel_tool_calls"] is False


class TestEmbeddedModel:
    def test_responses_on_the_embedded_model(self, running: Running) -> None:
        r = client(running).responses.create(model="local/gemma-3-270m", input="Say hello.", max_output_tokens=8)
        assert r.status in {"completed", "incomplete"}
        assert r.output_text.strip()
        assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0

    def test_streamed_responses_on_the_embedded_model(self, running: Running) -> None:
        status, events = sse(running, {"model": "local/gemma-3-270m", "input": "Say hello.",
                                       "max_output_tokens": 8, "stream": True})
        assert status == 200
        assert_valid_sequence(events)
        assert any(e["type"] == "response.output_text.delta" for e in events)


class TestStreamFailures:
    def test_an_upstream_that_breaks_off_ends_in_response_failed(self, running: Running) -> None:
        status, events = sse(running, {"model": "test/drop", "input": "x", "stream": True})
        assert status == 200
        for event in events:
            _events.validate_python(event)
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["message"]
        assert not any(e["type"] == "response.completed" for e in events)

    def test_the_sdk_sees_it_as_openai_reports_a_failed_response(self, running: Running) -> None:
        with client(running).responses.stream(model="test/drop", input="x") as stream:
            seen = [event.type for event in stream]
            with pytest.raises(RuntimeError, match=r"response\.completed"):  # the SDK's own answer to a failure
                stream.get_final_response()
        assert seen[-1] == "response.failed"

    def test_a_client_that_leaves_cancels_the_upstream(self, running: Running) -> None:
        up = running.upstreams["a"]
        before = up.cancelled
        with httpx.stream("POST", running.base_url + "/responses", timeout=10,
                          headers={"authorization": "Bearer " + running.keys["member"]},
                          json={"model": "test/slow-stream", "input": "x", "stream": True}) as r:
            next(r.iter_bytes())
        assert eventually(lambda: up.cancelled > before)

    def test_events_say_responses_and_how_it_ended(self, running: Running) -> None:
        from e2e.inference.test_local_and_events import _collect

        rid = {k: f"req-resp-{k}-{uuid.uuid4().hex}" for k in ("ok", "broken")}
        c = client(running)

        def trigger() -> None:
            c.responses.create(model="test/chat", input="x", extra_headers={"x-request-id": rid["ok"]})
            sse(running, {"model": "test/drop", "input": "x", "stream": True, "store": False},
                headers={"x-request-id": rid["broken"]})

        events = with_thread(_collect, running, trigger, set(rid.values()))
        ok, broken = events[rid["ok"]], events[rid["broken"]]
        assert ok.endpoint == broken.endpoint == "responses"
        assert (ok.status, ok.prompt_tokens, ok.completion_tokens) == ("ok", 7, 3)
        assert broken.status == "error" and broken.stream and broken.error_type is not None

    def test_tools_on_the_embedded_model_are_a_clear_400(self, running: Running) -> None:
        with pytest.raises(openai.BadRequestError) as err:
            client(running).responses.create(model="local/gemma-3-270m", input="Weather?", tools=[WEATHER])  # type: ignore[list-item]
        assert "cannot call tools" in str(err.value)


class TestOpenAIsPublishedDocument:
    """What the gateway produces, held to OpenAI's own OpenAPI document (tests/contracts/openai_responses.json,
    the version recorded there), not only to the SDK's types."""

    @pytest.mark.parametrize("body", [
        {"model": "test/chat", "input": "hi"},
        {"model": "test/agent", "input": "Weather?", "tools": [WEATHER]},
        {"model": "test/agent", "input": "x", "text": {"format": {"type": "json_schema", "name": "a",
                                                                  "schema": {"type": "object"}}}},
        {"model": "test/chat", "input": "hi", "max_output_tokens": 5, "metadata": {"k": "v"}, "user": "u"},
    ], ids=["text", "function call", "json_schema", "settings echoed"])
    def test_response_objects(self, running: Running, body: dict[str, Any]) -> None:
        from published_schemas import errors

        r = httpx.post(running.base_url + "/responses", json=body, timeout=30,
                       headers={"authorization": "Bearer " + running.keys["member"]})
        assert r.status_code == 200, r.text
        assert errors("openai_responses.json", "Response", r.json()) == [], r.json()
        stored = httpx.get(running.base_url + "/responses/" + r.json()["id"], timeout=30,
                           headers={"authorization": "Bearer " + running.keys["member"]})
        assert errors("openai_responses.json", "Response", stored.json()) == []

    @pytest.mark.parametrize("body", [
        {"model": "test/chat", "input": "hi", "stream": True},
        {"model": "test/agent", "input": "Weather?", "tools": [WEATHER], "stream": True},
        {"model": "test/drop", "input": "x", "stream": True, "store": False},
    ], ids=["text", "function call", "failed"])
    def test_every_stream_event(self, running: Running, body: dict[str, Any]) -> None:
        from published_schemas import errors

        status, events = sse(running, body)
        assert status == 200
        for event in events:
            assert errors("openai_responses.json", "ResponseStreamEvent", event) == [], event
