"""Every error the app can produce is application/problem+json, as a new user would meet it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import NotFound
from aiaas.kernel.http import RequestContext
from aiaas.kernel.web import make_app

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}


class Widget(msgspec.Struct):
    name: str
    count: int


@post("/widgets", opt={"public": True}, sync_to_thread=False)
def create_widget(data: JSONBody[Widget]) -> Widget:
    """Echo a widget (a route with a typed body, to exercise decoding errors)."""
    return data


@post("/boom", opt={"public": True}, sync_to_thread=False)
def boom() -> None:
    """Fail with an unexpected exception carrying a secret in its message."""
    raise RuntimeError("database password is hunter2")


@post("/missing", opt={"public": True}, sync_to_thread=False)
def missing() -> None:
    """Raise a domain error."""
    raise NotFound("widget 42 does not exist", code="widget_not_found")


def _assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    doc = r.json()
    assert set(doc) >= PROBLEM_FIELDS, doc
    assert doc["status"] == status
    assert doc["request_id"] == r.headers["x-request-id"]
    return doc


@pytest.fixture(params=[False, True], ids=["management", "openai"])
async def client(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    small = msgspec.structs.replace(settings, max_request_body_bytes=4096)
    app = make_app(role="test", settings=small, route_handlers=[create_widget, boom, missing], checks={},
                   title="t", description="d", openai_errors=request.param)
    async with AsyncTestClient(app=RequestContext(app, role="test"), raise_server_exceptions=False) as c:
        c.openai = request.param  # type: ignore[attr-defined]
        yield c


class TestProblemJson:
    async def test_unknown_route(self, client: AsyncTestClient[Any]) -> None:
        doc = _assert_problem(await client.get("/nowhere"), 404)
        assert "/nowhere" in doc["detail"]

    async def test_wrong_method(self, client: AsyncTestClient[Any]) -> None:
        _assert_problem(await client.delete("/widgets"), 405)

    async def test_bad_json(self, client: AsyncTestClient[Any]) -> None:
        r = await client.post("/widgets", content=b'{"name": "x",', headers={"content-type": "application/json"})
        doc = _assert_problem(r, 400)
        assert "JSON" in doc["detail"]

    async def test_wrong_types_list_failing_fields(self, client: AsyncTestClient[Any]) -> None:
        status = 400 if client.openai else 422  # type: ignore[attr-defined]
        doc = _assert_problem(await client.post("/widgets", json={"name": "x", "count": "many"}), status)
        assert "count" in doc["detail"]
        assert doc["errors"], doc
        if client.openai:  # type: ignore[attr-defined]
            assert doc["error"]["type"] == "invalid_request_error"
            assert doc["error"]["param"] == "count"

    async def test_missing_field(self, client: AsyncTestClient[Any]) -> None:
        status = 400 if client.openai else 422  # type: ignore[attr-defined]
        doc = _assert_problem(await client.post("/widgets", json={"count": 1}), status)
        assert "name" in doc["detail"]

    async def test_huge_body_refused(self, client: AsyncTestClient[Any]) -> None:
        _assert_problem(await client.post("/widgets", content=b"x" * 10_000,
                                          headers={"content-type": "application/json"}), 413)

    async def test_unhandled_exception_hides_internals(self, client: AsyncTestClient[Any],
                                                       caplog: pytest.LogCaptureFixture) -> None:
        doc = _assert_problem(await client.post("/boom"), 500)
        assert "hunter2" not in str(doc)
        assert "RuntimeError" not in str(doc)
        assert any(r.exc_info for r in caplog.records if r.name == "aiaas.errors")

    async def test_domain_error(self, client: AsyncTestClient[Any]) -> None:
        doc = _assert_problem(await client.post("/missing"), 404)
        assert doc["detail"] == "widget 42 does not exist"
        if client.openai:  # type: ignore[attr-defined]
            assert doc["error"] == {"message": "widget 42 does not exist", "type": "not_found_error",
                                    "code": "widget_not_found", "param": None}  # always there, as OpenAI's
        else:
            assert "error" not in doc

    async def test_valid_request_still_works(self, client: AsyncTestClient[Any]) -> None:
        r = await client.post("/widgets", json={"name": "x", "count": 2})
        assert r.status_code == 201
        assert r.json() == {"name": "x", "count": 2}
