"""The inference edge's HTTP contract: routing, authentication, errors, streaming and disconnects.

The edge is driven over plain ASGI with a stand-in authenticator and gateway (both ours; the gateway's
own behaviour is covered by the integration and end-to-end tests through the running streamer).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from redis.exceptions import ClusterDownError, MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc

from aiaas.inference.asgi import ROUTES, InferenceEdge, route_permissions
from aiaas.inference.providers.base import UpstreamReply
from aiaas.inference.service.calls import Caller, Outcome, Routed
from aiaas.inference.service.gateway import Gateway as RealGateway
from aiaas.kernel.errors import AppError, UpstreamError
from aiaas.kernel.security import OrgRole, Permission, Principal, Scope
from aiaas.usage import api as usage_api

VALID = "sk-" + "a" * 43
NO_SCOPE = "sk-" + "b" * 43
LIMITS = {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9"}
CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()


class Auth:
    """Stands in for the principal resolver: two known keys, one without the inference scope."""

    def __init__(self) -> None:
        self.calls = 0

    async def authenticate(self, token: str) -> Principal | None:
        self.calls += 1
        scopes = {VALID: frozenset({Scope.INFERENCE}), NO_SCOPE: frozenset({Scope.MANAGEMENT_READ})}.get(token)
        if scopes is None:
            return None
        return Principal(kind="api_key", user_id="u", org_id="o", key_id="k", org_role=OrgRole.MEMBER,
                         scopes=scopes)

    async def for_org(self, principal: Principal, org_id: str) -> Principal | None:  # pragma: no cover
        return principal


class Events:
    """An upstream event stream of the stand-in gateway (closing it is recorded)."""

    def __init__(self, chunks: Sequence[bytes], hang: bool) -> None:
        self.first = chunks[0]
        self._rest = deque(chunks[1:])
        self._hang = hang
        self.closed = 0

    async def next_event(self) -> bytes | None:
        if self._rest:
            return self._rest.popleft()
        if self._hang:
            await asyncio.Event().wait()
        return None

    async def aclose(self) -> None:
        self.closed += 1


class Gateway(RealGateway):
    """The real gateway's response and accounting steps, with routing stood in: records what the edge
    hands it and what it accounts."""

    def __init__(self, *, error: AppError | None = None, fail: BaseException | None = None,
                 chunks: Sequence[bytes] = (b"data: {}\n\n",), hang: bool = False, hang_route: bool = False):
        self.error = error
        self.fail = fail
        self.chunks = chunks
        self.hang = hang
        self.hang_route = hang_route
        self.routed_with: Any = None
        self.route_cancelled = False
        self.events: Events | None = None
        self.finished: list[tuple[Routed, Outcome]] = []

    async def route(self, caller: Caller, principal: Principal, parsed: Any) -> Routed:
        self.routed_with = (caller, principal, parsed)
        try:
            if self.hang_route:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.route_cancelled = True
            raise
        if self.fail is not None:
            raise self.fail
        base = Routed(caller=caller, model=parsed.model, known=True, stream=parsed.stream, estimated_prompt=3,
                      admission=usage_api.Admission(reservation_id="r1", headers=LIMITS))
        if self.error is not None:
            return replace(base, error=self.error)
        if parsed.stream:
            self.events = Events(self.chunks, self.hang)
            return replace(base, events=self.events)
        return replace(base, reply=UpstreamReply(body=b'{"object":"chat.completion"}'))

    def finish(self, routed: Routed, outcome: Outcome) -> None:
        self.finished.append((routed, outcome))

    @property
    def outcomes(self) -> list[Outcome]:
        return [o for _, o in self.finished]


class Inner:
    """The Litestar app behind the edge."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class Reply:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        start = messages[0]
        self.status: int = start["status"]
        self.headers = {k.decode(): v.decode() for k, v in start["headers"]}
        self.bodies = [m.get("body", b"") for m in messages[1:]]
        self.body = b"".join(self.bodies)

    def json(self) -> Any:
        return json.loads(self.body)


async def call(app: Any, method: str, path: str, *, token: str | None = VALID, body: bytes = CHAT,
               parts: Sequence[bytes] | None = None, headers: dict[str, str] | None = None,
               leave_after: int | None = None, scope_out: dict[str, Any] | None = None,
               leave_now: bool = False, send_fails_at: int | None = None) -> Reply:
    """Drive one request; ``leave_after``: the client disconnects after that many body messages;
    ``leave_now``: once the body is read; ``send_fails_at``: that ``send`` call (0-based) raises."""
    hdrs = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        hdrs["authorization"] = f"Bearer {token}"
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "state": {"request_id": "req_t"},
                             "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()]}
    pieces = list(parts) if parts is not None else [body]
    incoming = deque({"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                     for i, p in enumerate(pieces))
    gone = asyncio.Event()
    if leave_now:
        gone.set()
    sent: list[dict[str, Any]] = []
    calls = [0]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.popleft()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        calls[0] += 1
        if send_fails_at is not None and calls[0] - 1 == send_fails_at:
            raise OSError("the connection broke")
        sent.append(message)
        if leave_after is not None and message["type"] == "http.response.body" and len(sent) - 1 >= leave_after:
            gone.set()

    await asyncio.wait_for(app(scope, receive, send), 5)
    if scope_out is not None:
        scope_out.update(scope)
    return Reply(sent) if sent else Reply([{"status": 0, "headers": []}])


def edge(gateway: Gateway | None = None, *, max_body: int = 10_000) -> tuple[InferenceEdge, Inner, Auth]:
    inner, auth = Inner(), Auth()
    return InferenceEdge(inner, authenticator=auth, gateway=lambda: gateway, max_body_bytes=max_body), inner, auth


def assert_problem(reply: Reply, status: int, code: str | None, openai_type: str) -> dict[str, Any]:
    assert reply.status == status
    assert reply.headers["content-type"] == "application/problem+json"
    assert int(reply.headers["content-length"]) == len(reply.body)
    doc = reply.json()
    assert doc["status"] == status and doc["instance"] and doc["request_id"] == "req_t"
    assert doc["error"]["type"] == openai_type and doc["error"].get("code") == code
    assert doc["error"]["message"] == doc["detail"]
    return doc  # type: ignore[no-any-return]


class TestRouting:
    async def test_other_paths_fall_through_to_litestar(self) -> None:
        app, inner, _ = edge(Gateway())
        reply = await call(app, "GET", "/v1/models")
        assert reply.status == 204 and inner.paths == ["/v1/models"]

    async def test_route_table_declares_the_invoke_permission(self) -> None:
        assert route_permissions() == [("POST", p, Permission.MODELS_INVOKE) for p in ROUTES]

    async def test_other_methods_are_405_with_allow(self) -> None:
        app, inner, _ = edge(Gateway())
        reply = await call(app, "GET", "/v1/chat/completions")
        assert_problem(reply, 405, None, "invalid_request_error")
        assert reply.headers["allow"] == "POST" and inner.paths == []

    async def test_route_label_is_the_path(self) -> None:
        app, _, _ = edge(Gateway())
        scope: dict[str, Any] = {}
        await call(app, "POST", "/v1/embeddings", body=b'{"model":"m","input":"x"}', scope_out=scope)
        assert scope["path_template"] == "/v1/embeddings"


class TestAuthentication:
    async def test_missing_token_is_401_with_challenge(self) -> None:
        app, _, _ = edge(Gateway())
        reply = await call(app, "POST", "/v1/chat/completions", token=None)
        assert_problem(reply, 401, "invalid_api_key", "authentication_error")
        assert reply.headers["www-authenticate"].startswith("Bearer")

    async def test_unknown_and_malformed_tokens_are_401(self) -> None:
        app, _, auth = edge(Gateway())
        for token in ("sk-" + "z" * 43, "sk-short", "not-a-token"):
            reply = await call(app, "POST", "/v1/chat/completions", token=token)
            assert_problem(reply, 401, "invalid_api_key", "authentication_error")
        assert auth.calls == 1  # malformed tokens never reach the resolver

    async def test_a_malformed_token_is_refused_before_the_body_is_read(self) -> None:
        app, _, auth = edge(Gateway(), max_body=10)
        for token in (None, "not-a-token"):
            reply = await call(app, "POST", "/v1/chat/completions", token=token, headers={"content-length": "99"})
            assert reply.status == 401  # not 413: the oversized body was never read
        assert auth.calls == 0

    async def test_invalid_body_without_credentials_is_401_not_400(self) -> None:
        app, _, _ = edge(Gateway())
        reply = await call(app, "POST", "/v1/chat/completions", token=None, body=b"{nope")
        assert reply.status == 401

    async def test_invalid_body_with_credentials_is_400_and_gateway_not_called(self) -> None:
        gw = Gateway()
        app, _, auth = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions", body=b'{"model": 3}')
        assert_problem(reply, 400, None, "invalid_request_error")
        assert auth.calls == 1 and gw.routed_with is None
        routed, outcome = gw.finished[0]
        assert outcome.http_status == 400 and routed.caller.key_id == "k" and not routed.known

    async def test_key_without_inference_scope_is_403(self) -> None:
        app, _, _ = edge(Gateway())
        reply = await call(app, "POST", "/v1/chat/completions", token=NO_SCOPE)
        assert_problem(reply, 403, "permission_denied", "permission_error")

    async def test_the_service_gets_the_caller_and_the_parsed_request(self) -> None:
        gw = Gateway()
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        assert reply.status == 200
        caller, principal, parsed = gw.routed_with
        assert (caller.request_id, caller.endpoint, caller.org_id, caller.key_id) == ("req_t", "chat.completions",
                                                                                     "o", "k")
        assert principal.key_id == "k" and parsed.model == "m"


class TestBodies:
    async def test_declared_length_over_the_limit_is_413(self) -> None:
        app, _, _ = edge(Gateway(), max_body=100)
        reply = await call(app, "POST", "/v1/chat/completions", headers={"content-length": "101"})
        assert_problem(reply, 413, "request_too_large", "invalid_request_error")

    async def test_streamed_body_over_the_limit_is_413(self) -> None:
        app, _, _ = edge(Gateway(), max_body=100)
        reply = await call(app, "POST", "/v1/chat/completions", parts=[b"x" * 60, b"x" * 60])
        assert reply.status == 413

    async def test_body_in_parts_is_joined(self) -> None:
        app, _, _ = edge(Gateway())
        reply = await call(app, "POST", "/v1/chat/completions", parts=[CHAT[:10], CHAT[10:]])
        assert reply.status == 200


class TestResponses:
    async def test_completion_carries_limits_and_processing_time_and_is_accounted_after(self) -> None:
        gw = Gateway()
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        assert reply.status == 200 and reply.body == b'{"object":"chat.completion"}'
        assert reply.headers["content-type"] == "application/json"
        assert int(reply.headers["content-length"]) == len(reply.body)
        assert reply.headers["x-ratelimit-remaining-requests"] == "9"
        assert int(reply.headers["openai-processing-ms"]) >= 0
        assert [o.status for o in gw.outcomes] == ["ok"]

    async def test_gateway_starting_is_503(self) -> None:
        app, _, _ = edge(None)
        reply = await call(app, "POST", "/v1/chat/completions")
        assert_problem(reply, 503, "starting", "server_error")
        assert reply.headers["retry-after"] == "1"

    async def test_upstream_error_after_admission_keeps_the_limit_headers(self) -> None:
        gw = Gateway(error=UpstreamError("upstream broke", code="upstream_error"))
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        assert_problem(reply, 502, "upstream_error", "server_error")
        assert reply.headers["x-ratelimit-limit-requests"] == "10"
        routed, outcome = gw.finished[0]
        assert outcome.http_status == 502 and outcome.status == "error"
        assert routed.admission is not None and routed.admission.reservation_id == "r1"  # settled by the worker

    async def test_unexpected_error_is_a_500_problem_and_still_accounted(self, caplog: pytest.LogCaptureFixture
                                                                        ) -> None:
        gw = Gateway(fail=RuntimeError("bug"))
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        doc = assert_problem(reply, 500, None, "server_error")
        assert "request id" in doc["detail"] and "bug" not in doc["detail"]
        assert "unhandled error" in caplog.text
        assert gw.outcomes[0].error_type == "RuntimeError"

    @pytest.mark.parametrize("fail", [RedisTimeoutError("Redis did not answer within 2s"),
                                      MaxConnectionsError("Too many connections"), ClusterDownError("down")])
    async def test_redis_not_answering_is_a_503_to_retry_not_a_500(self, fail: Exception,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
        gw = Gateway(fail=fail)
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        doc = assert_problem(reply, 503, "redis_unavailable", "server_error")
        assert reply.headers["retry-after"] == "1" and "Redis" in doc["detail"]
        assert "unhandled error" not in caplog.text and "Redis unavailable" in caplog.text
        assert gw.outcomes[0].http_status == 503

    async def test_postgres_refusing_connections_is_a_503_to_retry(self) -> None:
        orig = asyncpg.TooManyConnectionsError("sorry, too many clients already")
        gw = Gateway(fail=sa_exc.DBAPIError.instance("SELECT 1", None, orig, Exception))
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        assert_problem(reply, 503, "database_unavailable", "server_error")
        assert reply.headers["retry-after"] == "2"

    async def test_another_database_error_is_still_a_500(self, caplog: pytest.LogCaptureFixture) -> None:
        gw = Gateway(fail=sa_exc.IntegrityError("INSERT", None, Exception("duplicate key value")))
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions")
        assert_problem(reply, 500, None, "server_error")
        assert "unhandled error" in caplog.text
        assert gw.outcomes[0].error_type == "IntegrityError"


STREAM = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()


class TestStreaming:
    async def test_events_are_written_as_they_come_then_the_body_ends(self) -> None:
        gw = Gateway(chunks=[b"data: {}\n\n", b"data: [DONE]\n\n"])
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions", body=STREAM)
        assert reply.status == 200
        assert reply.headers["content-type"] == "text/event-stream" and reply.headers["cache-control"] == "no-cache"
        assert reply.headers["x-ratelimit-remaining-requests"] == "9"
        assert reply.bodies == [b"data: {}\n\n", b"data: [DONE]\n\n", b""]
        assert [o.status for o in gw.outcomes] == ["ok"]
        assert gw.events is not None and gw.events.closed == 1

    async def test_client_leaving_cancels_the_relay_at_once(self) -> None:
        gw = Gateway(chunks=[b"data: {}\n\n"], hang=True)
        app, _, _ = edge(gw)
        reply = await call(app, "POST", "/v1/chat/completions", body=STREAM, leave_after=1)
        assert reply.bodies == [b"data: {}\n\n"]
        assert gw.events is not None and gw.events.closed == 1
        assert [(o.status, o.http_status) for o in gw.outcomes] == [("cancelled", 200)]


class TestDisconnects:
    @pytest.mark.parametrize("body", [CHAT, STREAM], ids=["whole", "stream"])
    async def test_a_client_leaving_before_the_first_byte_cancels_the_request(self, body: bytes) -> None:
        gw = Gateway(hang_route=True)
        app, _, _ = edge(gw)
        await call(app, "POST", "/v1/chat/completions", body=body, leave_now=True)
        assert gw.route_cancelled  # the upstream call is cancelled, not left running
        (_, outcome), = gw.finished
        assert (outcome.status, outcome.error_type, outcome.http_status) == ("cancelled", "client_disconnected", 499)


class TestNoLeaks:
    """Whatever fails after an upstream stream was opened, the stream is closed and the request accounted."""

    @pytest.mark.parametrize("fails_at", [0, 1, 2])
    async def test_a_failing_send_closes_the_upstream_stream(self, fails_at: int,
                                                             caplog: pytest.LogCaptureFixture) -> None:
        gw = Gateway(chunks=[b"data: {}\n\n", b"data: [DONE]\n\n"])
        app, _, _ = edge(gw)
        await call(app, "POST", "/v1/chat/completions", body=STREAM, send_fails_at=fails_at)
        assert gw.events is not None and gw.events.closed == 1
        assert len(gw.finished) == 1 and gw.outcomes[0].status == "error"

    async def test_a_failing_reply_send_is_accounted(self, caplog: pytest.LogCaptureFixture) -> None:
        gw = Gateway()
        app, _, _ = edge(gw)
        await call(app, "POST", "/v1/chat/completions", send_fails_at=0)
        assert [o.status for o in gw.outcomes] == ["error"]
