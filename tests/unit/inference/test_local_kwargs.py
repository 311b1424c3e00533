"""What the embedded model is asked: the request's parameters it can honour, and a clear 400 for what it cannot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from aiaas.inference.providers.base import Call, UpstreamFailure
from aiaas.inference.providers.local import LocalRunner


@pytest.fixture
def runner() -> Iterator[LocalRunner]:
    r = LocalRunner(model_path="/nonexistent.gguf", n_ctx=256, n_threads=1, max_queue=1, default_max_tokens=32)
    yield r
    r.shutdown()


def call(**body: Any) -> Call:
    return Call(endpoint="chat.completions", body=json.dumps({"model": "m", "messages": [
        {"role": "user", "content": "hi"}], **body}).encode(), public_model="m", deadline=0)


class TestChatKwargs:
    def test_the_sampling_and_format_parameters_it_honours(self, runner: LocalRunner) -> None:
        fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
        kind, kwargs = runner._kwargs(call(temperature=0.2, top_k=5, response_format=fmt, user="u", max_tokens=8))
        assert kind == "chat"
        assert kwargs == {"temperature": 0.2, "top_k": 5, "response_format": fmt, "max_tokens": 8,
                          "repeat_penalty": 1.1, "messages": [{"role": "user", "content": "hi"}]}

    def test_tools_are_refused_not_dropped(self, runner: LocalRunner) -> None:
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        with pytest.raises(UpstreamFailure) as err:
            runner._kwargs(call(tools=tools))
        assert err.value.kind == "status_4xx" and err.value.status == 400
        assert json.loads(err.value.body or b"{}")["error"]["param"] == "tools"
        # With tool_choice "none" the tools are only context: the request is served without them.
        assert "tools" not in runner._kwargs(call(tools=tools, tool_choice="none"))[1]

    def test_max_tokens_over_the_cap_is_refused(self, runner: LocalRunner) -> None:
        with pytest.raises(UpstreamFailure, match="at most 32"):
            runner._kwargs(call(max_tokens=33))
