"""The official openai SDK against the running streamer and fake OpenAI-wire upstreams."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import openai
import pytest

from e2e.inference.conftest import Running, eventually

pytestmark = pytest.mark.e2e


def client(running: Running, key: str = "member") -> openai.OpenAI:
    key = running.keys.get(key, "sk-not-a-real-key-" + key)
    return openai.OpenAI(base_url=running.base_url, api_key=key, max_retries=0, timeout=20)


def aclient(running: Running, key: str = "member") -> openai.AsyncOpenAI:
    key = running.keys.get(key, "sk-not-a-real-key-" + key)
    return openai.AsyncOpenAI(base_url=running.base_url, api_key=key, max_retries=0, timeout=20)


MSG = [{"role": "user", "content": "hi"}]


def auth(running: Running) -> dict[str, str]:
    return {"authorization": "Bearer " + running.keys["member"]}


class TestChatNonStreaming:
    def test_sync(self, running: Running) -> None:
        raw = client(running).chat.completions.with_raw_response.create(model="test/chat", messages=MSG)
        r = raw.parse()
        assert r.object == "chat.completion"
        assert r.choices[0].message.content == "Hello from fake"
        assert r.choices[0].finish_reason == "stop"
        assert r.usage is not None and r.usage.total_tokens == 10
        assert raw.headers["x-request-id"]
        assert int(raw.headers["openai-processing-ms"]) >= 0

    async def test_async(self, running: Running) -> None:
        async with aclient(running) as c:
            r = await c.chat.completions.create(model="test/chat", messages=MSG)
        assert r.choices[0].message.content == "Hello from fake"

    def test_unknown_fields_pass_through_untouched(self, running: Running) -> None:
        up = running.upstreams["a"]
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
        client(running).chat.completions.create(model="test/chat", messages=MSG, tools=tools, tool_choice="auto",
                                                seed=7, logprobs=True, response_format={"type": "json_object"},
                                                extra_body={"vendor_knob": {"deep": [1, 2.5, None]}})
        sent = up.requests[-1]
        assert sent["model"] == "fake"
        assert sent["tools"] == tools
        assert sent["tool_choice"] == "auto"
        assert sent["seed"] == 7
        assert sent["logprobs"] is True
        assert sent["response_format"] == {"type": "json_object"}
        assert sent["vendor_knob"] == {"deep": [1, 2.5, None]}


class TestChatStreaming:
    def test_sync_stream_without_usage_strips_usage_chunk(self, running: Running) -> None:
        chunks = list(client(running).chat.completions.create(model="test/chat", messages=MSG, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from fake"
        assert all(c.choices for c in chunks), "the usage chunk nobody asked for was passed on"
        assert running.upstreams["a"].requests[-1]["stream_options"] == {"include_usage": True}

    def test_sync_stream_with_usage(self, running: Running) -> None:
        chunks = list(client(running).chat.completions.create(
            model="test/chat", messages=MSG, stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        assert chunks[-1].choices == []

    async def test_async_stream(self, running: Running) -> None:
        async with aclient(running) as ac:
            stream = await ac.chat.completions.create(model="test/chat", messages=MSG, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from fake"

    def test_raw_sse_framing(self, running: Running) -> None:
        with httpx.stream("POST", running.base_url + "/chat/completions", headers=auth(running),
                          json={"model": "test/chat", "messages": MSG, "stream": True}, timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            body = r.read()
        events = body.split(b"\n\n")
        assert events[-2] == b"data: [DONE]" and events[-1] == b""
        assert all(e.startswith(b"data: ") for e in events[:-1])

    def test_failure_mid_stream_is_an_in_band_error(self, running: Running) -> None:
        stream = client(running).chat.completions.create(model="test/drop", messages=MSG, stream=True)
        with pytest.raises(openai.APIError) as info:
            for _ in stream:
                pass
        assert "interrupted" in str(info.value)

    def test_slow_first_byte_fails_over(self, running: Running) -> None:
        r = client(running).chat.completions.create(model="test/failover", messages=MSG)
        assert r.choices[0].message.content == "Hello from fake"
        chunks = list(client(running).chat.completions.create(model="test/failover", messages=MSG, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake"

    def test_client_disconnect_cancels_upstream(self, running: Running) -> None:
        up = running.upstreams["a"]
        before = up.cancelled
        with httpx.stream("POST", running.base_url + "/chat/completions", headers=auth(running),
                          json={"model": "test/slow-stream", "messages": MSG, "stream": True}, timeout=10) as r:
            it = r.iter_bytes()
            next(it)
        assert eventually(lambda: up.cancelled > before)


class TestCompletionsAndEmbeddings:
    def test_completions(self, running: Running) -> None:
        r = client(running).completions.create(model="test/chat", prompt="Say")
        assert r.object == "text_completion"
        assert r.choices[0].text == "Hello from fake"

    async def test_completions_stream(self, running: Running) -> None:
        async with aclient(running) as ac:
            stream = await ac.completions.create(model="test/chat", prompt="Say", stream=True)
            text = "".join([c.choices[0].text async for c in stream if c.choices])
        assert text == "Hello from fake"

    def test_embeddings_base64_default(self, running: Running) -> None:
        r = client(running).embeddings.create(model="test/embed", input=["a", "b"])
        assert len(r.data) == 2
        assert r.data[0].embedding == pytest.approx([0.25, -0.5, 1.0])

    async def test_embeddings_float(self, running: Running) -> None:
        async with aclient(running) as c:
            r = await c.embeddings.create(model="test/embed", input="a", encoding_format="float")
        assert r.data[0].embedding == [0.25, -0.5, 1.0]
        assert r.usage.prompt_tokens > 0
        assert base64 and struct  # the SDK decodes base64 itself; float is passed as is


class TestModels:
    def test_list(self, running: Running) -> None:
        ids = {m.id for m in client(running).models.list()}
        assert {"test/chat", "test/embed", "local/gemma-3-270m"} <= ids

    def test_org_policy_limits_list(self, running: Running) -> None:
        assert [m.id for m in client(running, "restricted-org").models.list()] == ["test/chat"]

    def test_key_allow_list_limits_list(self, running: Running) -> None:
        assert [m.id for m in client(running, "narrow-key").models.list()] == ["test/chat"]

    async def test_retrieve(self, running: Running) -> None:
        async with aclient(running) as c:
            m = await c.models.retrieve("test/chat")
        assert m.id == "test/chat" and m.object == "model"

    def test_retrieve_unknown(self, running: Running) -> None:
        with pytest.raises(openai.NotFoundError):
            client(running).models.retrieve("nope/nothing")


class TestErrorMapping:
    def test_401(self, running: Running) -> None:
        with pytest.raises(openai.AuthenticationError):
            client(running, "wrong").chat.completions.create(model="test/chat", messages=MSG)

    def test_403_model_not_on_key(self, running: Running) -> None:
        with pytest.raises(openai.PermissionDeniedError) as info:
            client(running, "narrow-key").chat.completions.create(model="test/no-usage", messages=MSG)
        assert info.value.code == "model_not_allowed"

    def test_403_role_cannot_invoke(self, running: Running) -> None:
        with pytest.raises(openai.PermissionDeniedError):
            client(running, "viewer").chat.completions.create(model="test/chat", messages=MSG)

    def test_404_unknown_model(self, running: Running) -> None:
        with pytest.raises(openai.NotFoundError) as info:
            client(running).chat.completions.create(model="nope/nothing", messages=MSG)
        assert info.value.code == "model_not_found"

    def test_404_model_outside_org_policy(self, running: Running) -> None:
        with pytest.raises(openai.NotFoundError):
            client(running, "restricted-org").chat.completions.create(model="test/no-usage", messages=MSG)

    def test_429_upstream_rate_limit(self, running: Running) -> None:
        with pytest.raises(openai.RateLimitError):
            client(running).chat.completions.create(model="test/ratelimit", messages=MSG)

    def test_400_validation_names_field(self, running: Running) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            client(running).chat.completions.create(model="test/chat", messages=[])
        assert info.value.param == "messages"
        with pytest.raises(openai.BadRequestError) as info:
            client(running).chat.completions.create(model="test/chat", messages=[{"role": 3, "content": "x"}])
        assert info.value.param == "messages[0].role"

    def test_400_from_upstream_passes_through(self, running: Running) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            client(running).chat.completions.create(model="test/badreq", messages=MSG)
        assert info.value.code == "context_length_exceeded"

    def test_5xx_upstream(self, running: Running) -> None:
        with pytest.raises(openai.InternalServerError):
            client(running).chat.completions.create(model="test/error", messages=MSG)

    def test_bad_json_is_400(self, running: Running) -> None:
        r = httpx.post(running.base_url + "/chat/completions", content=b"{nope",
                       headers={**auth(running), "content-type": "application/json"})
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["error"]["type"] == "invalid_request_error"


def _sse(body: bytes) -> list[Any]:
    return [e for e in body.split(b"\n\n") if e]


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]


class TestChatToolCalls:
    def test_tool_calls_stream_chunk_by_chunk_unchanged(self, running: Running) -> None:
        from fake_upstream import AGENT_ARGUMENTS

        chunks = list(client(running).chat.completions.create(model="test/agent", messages=MSG, tools=TOOLS,
                                                              stream=True))
        deltas = [c.choices[0].delta.tool_calls[0] for c in chunks
                  if c.choices and c.choices[0].delta.tool_calls]
        assert len(deltas) == 4  # the id-and-name chunk, then the arguments in three fragments, as sent
        assert deltas[0].id and deltas[0].function is not None and deltas[0].function.name == "get_weather"
        assert "".join(d.function.arguments or "" for d in deltas if d.function) == AGENT_ARGUMENTS
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert running.upstreams["a"].requests[-1]["tools"] == TOOLS

    def test_a_tool_result_turn(self, running: Running) -> None:
        first = client(running).chat.completions.create(model="test/agent", messages=MSG, tools=TOOLS)
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        second = client(running).chat.completions.create(model="test/agent", tools=TOOLS, messages=[
            *MSG, first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
        assert second.choices[0].message.content == "The tool said: sunny"
