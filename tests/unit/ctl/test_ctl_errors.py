"""Errors become one line and an exit code: problem+json's title and detail, OpenAI's error.message, the
status mapped to 3/4/5, network failures to 6; and the client's path filling and pagination."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from aiaas.ctl import errors
from aiaas.ctl.client import Client, fill, paginate
from aiaas.ctl.errors import ApiError, NetworkFailure, api_error
from support import free_port

PROBLEM = {"type": "https://aiaas.dev/problems/forbidden", "title": "Permission denied", "status": 403,
           "detail": "This action needs the 'members:manage' permission.", "instance": "/v1/orgs/x/members",
           "request_id": "req_1", "code": "permission_denied"}


class TestExitCodes:
    @pytest.mark.parametrize(("status", "code"), [(400, 1), (401, 3), (403, 4), (404, 5), (409, 1), (422, 1),
                                                  (429, 1), (500, 1), (503, 1)])
    def test_by_status(self, status: int, code: int) -> None:
        assert errors.exit_code_for_status(status) == code
        assert api_error(status, b"{}").exit_code == code

    def test_the_documented_numbers(self) -> None:
        assert (errors.OK, errors.API_ERROR, errors.USAGE, errors.UNAUTHENTICATED, errors.FORBIDDEN,
                errors.NOT_FOUND, errors.NETWORK) == (0, 1, 2, 3, 4, 5, 6)


class TestMessages:
    def test_problem_title_and_detail(self) -> None:
        error = api_error(403, json.dumps(PROBLEM).encode())
        assert error.message == "Permission denied: This action needs the 'members:manage' permission. [HTTP 403]"
        assert (error.code, error.request_id, error.status) == ("permission_denied", "req_1", 403)

    def test_openai_error_message_on_inference_routes(self) -> None:
        body = {"error": {"message": "Incorrect API key provided.", "type": "authentication_error", "param": None,
                          "code": "invalid_api_key"}}
        error = api_error(401, json.dumps(body).encode())
        assert error.message == "Incorrect API key provided. [HTTP 401]" and error.code == "invalid_api_key"

    def test_detail_alone(self) -> None:
        assert api_error(404, b'{"detail": "Model not found."}').message == "Model not found. [HTTP 404]"

    def test_a_body_that_is_not_json(self) -> None:
        assert api_error(502, b"upstream exploded").message == "upstream exploded [HTTP 502]"
        assert api_error(502, b"<html>bad gateway</html>", reason="Bad Gateway").message == "Bad Gateway [HTTP 502]"

    def test_retry_after_on_429(self) -> None:
        error = api_error(429, b'{"title": "Too many requests"}', headers={"retry-after": "7"})
        assert error.message == "Too many requests (retry after 7 s) [HTTP 429]"


def client(handler: Any, **kw: Any) -> Client:
    return Client("http://api.test", transport=httpx.MockTransport(handler), **kw)


class TestClient:
    def test_sends_the_credential_and_fills_the_path(self) -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, json={"ok": True})

        c = client(handler, token="sk-abc")
        reply = c.call("GET", "/v1/orgs/{org_id}/keys/{key_id}", org_id="a/b", key_id="k 1",
                       params={"include_revoked": True, "name": None, "group_by": ["model", "user"], "empty": []})
        assert reply.json() == {"ok": True}
        request = seen[0]
        assert request.url.raw_path == b"/v1/orgs/a%2Fb/keys/k%201?include_revoked=true&group_by=model&group_by=user"
        assert request.headers["authorization"] == "Bearer sk-abc"
        assert request.headers["user-agent"].startswith("aiaasctl/")

    def test_an_error_status_raises_with_the_problem_message_and_the_hint(self) -> None:
        problem = {"title": "Unauthorized", "detail": "Token expired.", "status": 401}
        c = client(lambda _r: httpx.Response(401, json=problem), unauthenticated_hint="run `aiaasctl login`")
        with pytest.raises(ApiError) as caught:
            c.call("GET", "/v1/users/me")
        assert caught.value.exit_code == 3
        assert caught.value.message == "Unauthorized: Token expired. [HTTP 401]; run `aiaasctl login`"

    def test_a_204_has_no_json(self) -> None:
        assert client(lambda _r: httpx.Response(204)).call("POST", "/v1/auth/logout").json() is None

    def test_a_closed_port_is_a_network_failure(self) -> None:
        c = Client(f"http://127.0.0.1:{free_port()}")
        try:
            with pytest.raises(NetworkFailure) as caught:
                c.call("GET", "/v1/users/me")
        finally:
            c.close()
        assert caught.value.exit_code == 6 and "cannot reach http://127.0.0.1:" in caught.value.message

    def test_a_timeout_is_a_network_failure(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("slow", request=request)

        with pytest.raises(NetworkFailure, match="did not answer within 30 s"):
            client(handler).call("GET", "/v1/users/me")

    def test_fill_refuses_missing_or_extra_values(self) -> None:
        with pytest.raises(ValueError, match="do not match"):
            fill("/v1/orgs/{org_id}", {})
        with pytest.raises(ValueError, match="do not match"):
            fill("/v1/orgs", {"org_id": "x"})


class TestPaginate:
    PAGES = {None: {"data": [1, 2], "next_cursor": "c1", "has_more": True},
             "c1": {"data": [3, 4], "next_cursor": "c2", "has_more": True},
             "c2": {"data": [5], "next_cursor": None, "has_more": False}}

    def fetch(self, asked: list[tuple[str | None, int]]) -> Any:
        def fetch(cursor: str | None, size: int) -> dict[str, Any]:
            asked.append((cursor, size))
            page = self.PAGES[cursor]
            return {**page, "data": page["data"][:size]}
        return fetch

    def test_all_pages(self) -> None:
        asked: list[tuple[str | None, int]] = []
        page = paginate(self.fetch(asked), limit=None, max_page=2)
        assert page.data == [1, 2, 3, 4, 5] and page.has_more is False and page.next_cursor is None
        assert asked == [(None, 2), ("c1", 2), ("c2", 2)]

    def test_stops_at_the_limit_and_says_there_is_more(self) -> None:
        asked: list[tuple[str | None, int]] = []
        page = paginate(self.fetch(asked), limit=3, max_page=2)
        assert page.data == [1, 2, 3] and page.has_more is True
        assert asked == [(None, 2), ("c1", 1)]
        assert page.as_json() == {"data": [1, 2, 3], "next_cursor": "c2", "has_more": True}
