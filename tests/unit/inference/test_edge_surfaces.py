"""The edge's translated surfaces over plain ASGI: Anthropic's authentication header and error shape, the
Responses API's storage rules, and how a translated stream ends when the upstream or the client goes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pydantic
from anthropic.types import ErrorResponse
from openai.types.responses import ResponseStreamEvent

from aiaas.inference.providers.base import UpstreamReply
from aiaas.kernel.errors import NotFound, Problem, encode_anthropic_problem, problem_for
from unit.inference.test_edge import VALID, Gateway, Reply, call, edge

MESSAGES = json.dumps({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}).encode()
RESPONSES = json.dumps({"model": "m", "input": "hi", "store": False}).encode()
CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
DONE = b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1,"total_tokens":5}}\n\n'
_responses_event = pydantic.TypeAdapter(ResponseStreamEvent)


def anthropic_problem(reply: Reply, status: int, error_type: str) -> dict[str, Any]:
    assert reply.status == status
    assert reply.headers["content-type"] == "application/problem+json"
    doc = reply.json()
    ErrorResponse.model_validate(doc)  # Anthropic's SDK reads it as its own error
    assert doc["type"] == "error" and doc["error"]["type"] == error_type
    assert doc["error"]["message"] == doc["detail"]
    assert doc["status"] == status and doc["problem_type"].startswith("https://") and doc["request_id"] == "req_t"
    return doc  # type: ignore[no-any-return]


def sse_events(reply: Reply) -> list[dict[str, Any]]:
    out = []
    for block in reply.body.decode().split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            out.append(json.loads(data[0]))
    return out


class TestAnthropicAuthentication:
    async def test_x_api_key_authenticates_on_the_anthropic_routes(self) -> None:
        gw = Gateway()
        app, _, _ = edge(gw)
        r = await call(app, "POST", "/v1/messages", token=None, body=MESSAGES, headers={"x-api-key": VALID})
        assert r.status == 200
        assert gw.routed_with[1].key_id == "k"

    async def test_x_api_key_is_not_read_on_openais_routes(self) -> None:
        app, _, _ = edge(Gateway())
        r = await call(app, "POST", "/v1/chat/completions", token=None, headers={"x-api-key": VALID})
        assert r.status == 401
        assert r.json()["error"]["type"] == "authentication_error"  # OpenAI's shape there

    async def test_a_missing_key_is_anthropics_authentication_error(self) -> None:
        app, _, _ = edge(Gateway())
        r = await call(app, "POST", "/v1/messages", token=None, body=MESSAGES)
        doc = anthropic_problem(r, 401, "authentication_error")
        assert "x-api-key" in doc["detail"]
        assert "www-authenticate" in r.headers

    async def test_a_bad_body_is_reported_after_authentication(self) -> None:
        app, _, auth = edge(Gateway())
        r = await call(app, "POST", "/v1/messages", token=None, body=b'{"model": "m"}', headers={"x-api-key": "x"})
        anthropic_problem(r, 401, "authentication_error")
        r = await call(app, "POST", "/v1/messages", body=b'{"model": "m", "messages": []}')
        doc = anthropic_problem(r, 400, "invalid_request_error")
        assert auth.calls == 1  # the malformed key was refused without a lookup, the valid one looked up
        assert doc["title"] == "Bad request"

    async def test_gateway_errors_take_anthropics_shape_with_the_limit_headers(self) -> None:
        app, _, _ = edge(Gateway(error=NotFound("No such model.", code="model_not_found")))
        r = await call(app, "POST", "/v1/messages", body=MESSAGES)
        anthropic_problem(r, 404, "not_found_error")
        assert r.headers["x-ratelimit-limit-requests"] == "10"
        assert r.headers["request-id"] == "req_t"

    async def test_the_anthropic_headers_are_accepted_whatever_they_say(self) -> None:
        gw = Gateway()
        app, _, _ = edge(gw)
        r = await call(app, "POST", "/v1/messages", body=MESSAGES,
                       headers={"anthropic-version": "1999-01-01", "anthropic-beta": "no-such-beta,another"})
        assert r.status == 200


class TestAnthropicErrorShape:
    def test_every_status_has_an_anthropic_type(self) -> None:
        expected = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                    502: "api_error", 503: "overloaded_error", 504: "timeout_error", 418: "invalid_request_error"}
        for status, kind in expected.items():
            problem = problem_for(status=status, detail="d", instance="/v1/messages", request_id="r", openai=True)
            doc = json.loads(encode_anthropic_problem(problem))
            assert doc["error"] == {"type": kind, "message": "d"}
            assert doc["type"] == "error" and doc["status"] == status

    def test_extensions_stay_at_the_top_level(self) -> None:
        problem = Problem(type="https://aiaas.dev/problems/x", title="T", status=429, detail="d", instance="/i",
                          code="rate_limit_exceeded", extensions={"limit": "rpm", "type": "ignored"})
        doc = json.loads(encode_anthropic_problem(problem))
        assert doc["limit"] == "rpm" and doc["type"] == "error" and doc["code"] == "rate_limit_exceeded"


class TestResponses:
    async def test_store_needs_the_store(self) -> None:
        app, _, _ = edge(Gateway())
        body = json.dumps({"model": "m", "input": "hi"}).encode()  # store defaults to true
        r = await call(app, "POST", "/v1/responses", body=body)
        assert r.status == 503 and r.json()["code"] == "store_unavailable"

    async def test_a_whole_answer_without_choices_is_an_empty_response(self) -> None:
        app, _, _ = edge(Gateway())  # the stand-in answers {"object":"chat.completion"}: no choices
        r = await call(app, "POST", "/v1/responses", body=RESPONSES)
        assert r.status == 200
        assert r.json()["object"] == "response" and r.json()["output"] == []

    async def test_a_whole_answer_that_is_not_json_is_a_502(self) -> None:
        class Garbled(Gateway):
            async def route(self, caller: Any, principal: Any, parsed: Any) -> Any:
                routed = await super().route(caller, principal, parsed)
                return replace(routed, reply=UpstreamReply(body=b"<html>oops</html>"))

        gw = Garbled()
        app, _, _ = edge(gw)
        r = await call(app, "POST", "/v1/responses", body=RESPONSES)
        assert r.status == 502 and r.json()["code"] == "upstream_invalid_response"
        assert gw.outcomes[-1].status == "error"

    async def test_a_stream_is_translated_and_usage_is_what_was_metered(self) -> None:
        gw = Gateway(chunks=[CHUNK, DONE, USAGE, b"data: [DONE]\n\n"])
        app, _, _ = edge(gw)
        body = json.dumps({"model": "m", "input": "hi", "store": False, "stream": True}).encode()
        r = await call(app, "POST", "/v1/responses", body=body)
        events = sse_events(r)
        for event in events:
            _responses_event.validate_python(event)
        assert events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["usage"]["input_tokens"] == 4
        outcome = gw.outcomes[-1]
        assert (outcome.status, outcome.prompt_tokens, outcome.completion_tokens) == ("ok", 4, 1)

    async def test_an_in_band_upstream_error_fails_the_response(self) -> None:
        gw = Gateway(chunks=[CHUNK, b'data: {"error":{"message":"boom","type":"server_error"}}\n\n', CHUNK])
        app, _, _ = edge(gw)
        body = json.dumps({"model": "m", "input": "hi", "store": False, "stream": True}).encode()
        r = await call(app, "POST", "/v1/responses", body=body)
        events = sse_events(r)
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["message"] == "boom"
        assert gw.outcomes[-1].status == "error"
        assert gw.events is not None and gw.events.closed == 1

    async def test_a_client_that_leaves_mid_stream_is_cancelled_and_the_upstream_closed(self) -> None:
        gw = Gateway(chunks=[CHUNK, CHUNK], hang=True)
        app, _, _ = edge(gw)
        body = json.dumps({"model": "m", "input": "hi", "store": False, "stream": True}).encode()
        await call(app, "POST", "/v1/responses", body=body, leave_after=2)
        assert gw.outcomes[-1].status == "cancelled"
        assert gw.events is not None and gw.events.closed == 1


class TestMessagesStream:
    async def test_a_stream_ends_with_message_stop_and_the_metered_usage(self) -> None:
        gw = Gateway(chunks=[CHUNK, DONE, USAGE, b"data: [DONE]\n\n"])
        app, _, _ = edge(gw)
        body = json.dumps({"model": "m", "max_tokens": 8, "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        r = await call(app, "POST", "/v1/messages", body=body)
        events = sse_events(r)
        assert events[-1]["type"] == "message_stop"
        assert events[-2]["usage"]["output_tokens"] == 1 and events[-2]["usage"]["input_tokens"] == 4
        assert r.headers["request-id"] == "req_t"
