"""What the gateway itself writes on OpenAI's own routes, held to OpenAI's published OpenAPI document
(tests/contracts/openai_chat.json, the version recorded there): the embedded model's completions and stream
chunks, the error body of a refusal and the in-band error of a broken stream. (An upstream's own answers
are relayed byte for byte; they are the upstream's to get right.)"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from e2e.inference.conftest import Running
from published_schemas import errors

pytestmark = pytest.mark.e2e

DOC = "openai_chat.json"
MSG = [{"role": "user", "content": "Say hello."}]


def post(running: Running, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(running.base_url + path, json=body, timeout=120,
                      headers={"authorization": "Bearer " + running.keys["member"]})


def chunks(running: Running, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    with httpx.stream("POST", running.base_url + path, json=body, timeout=120,
                      headers={"authorization": "Bearer " + running.keys["member"]}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                out.append(json.loads(line[6:]))
    return out


class TestTheEmbeddedModel:
    def test_a_chat_completion(self, running: Running) -> None:
        r = post(running, "/chat/completions", {"model": "local/gemma-3-270m", "messages": MSG, "max_tokens": 8})
        assert r.status_code == 200
        assert errors(DOC, "CreateChatCompletionResponse", r.json()) == [], r.json()

    def test_every_stream_chunk(self, running: Running) -> None:
        got = chunks(running, "/chat/completions", {"model": "local/gemma-3-270m", "messages": MSG, "max_tokens": 8,
                                                     "stream": True, "stream_options": {"include_usage": True}})
        assert got
        for chunk in got:
            assert errors(DOC, "CreateChatCompletionStreamResponse", chunk) == [], chunk

    def test_a_legacy_completion(self, running: Running) -> None:
        r = post(running, "/completions", {"model": "local/gemma-3-270m", "prompt": "The sky is", "max_tokens": 4})
        assert r.status_code == 200
        assert errors(DOC, "CreateCompletionResponse", r.json()) == [], r.json()


class TestTheGatewaysOwnErrors:
    @pytest.mark.parametrize(("body", "status"), [
        ({"model": "nope/none", "messages": MSG}, 404),
        ({"model": "test/chat", "messages": []}, 400),
        ({"model": "test/chat", "messages": MSG, "temperature": 9}, 400),
    ], ids=["unknown model", "no messages", "out of range"])
    def test_a_refusal_carries_openais_error_object(self, running: Running, body: dict[str, Any], status: int) -> None:
        r = post(running, "/chat/completions", body)
        assert r.status_code == status
        assert errors(DOC, "ErrorResponse", r.json()) == [], r.json()

    def test_a_broken_stream_ends_in_openais_error_object(self, running: Running) -> None:
        got = chunks(running, "/chat/completions", {"model": "test/drop", "messages": MSG, "stream": True})
        assert "error" in got[-1]
        assert errors(DOC, "ErrorResponse", got[-1]) == [], got[-1]
