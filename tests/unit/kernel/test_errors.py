"""Problem documents: RFC 7807 fields always, OpenAI's error object on the inference endpoints."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc

from aiaas.kernel import errors


class TestProblemFor:
    @pytest.mark.parametrize(
        ("status", "openai_type"),
        [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
         (404, "not_found_error"), (429, "rate_limit_error"), (500, "server_error"), (503, "server_error")],
    )
    def test_openai_types_follow_status(self, status: int, openai_type: str) -> None:
        p = errors.problem_for(status=status, detail="d", instance="/v1/x", request_id="r", openai=True)
        assert p.error is not None
        assert p.error.type == openai_type
        assert p.error.message == "d"

    def test_management_problem_has_no_openai_object(self) -> None:
        p = errors.problem_for(status=404, detail="d", instance="/x", request_id="r")
        doc = msgspec.json.decode(msgspec.json.encode(p))
        assert set(doc) == {"type", "title", "status", "detail", "instance", "request_id"}
        assert doc["type"].startswith(errors.PROBLEM_BASE)

    def test_unknown_status_gets_generic_title(self) -> None:
        p = errors.problem_for(status=418, detail="d", instance="/x", request_id=None)
        assert p.title == "Error"


class TestAppErrors:
    @pytest.mark.parametrize(
        ("cls", "status"),
        [(errors.BadRequest, 400), (errors.Unauthenticated, 401), (errors.Forbidden, 403),
         (errors.NotFound, 404), (errors.Conflict, 409), (errors.ValidationFailed, 422),
         (errors.TooManyRequests, 429), (errors.UpstreamError, 502), (errors.ServiceUnavailable, 503)],
    )
    def test_each_error_has_its_status(self, cls: type[errors.AppError], status: int) -> None:
        exc = cls("why", code="c", headers={"Retry-After": "1"})
        assert exc.status == status
        assert exc.detail == "why"
        assert exc.headers == {"Retry-After": "1"}


class TestRedisNotAnswering:
    """A Redis error no caller degraded on (down, stalled past its deadline, a pool exhausted past it)
    reaches the client as a 503 to retry, with the problem document, never as a 500."""

    @pytest.mark.parametrize("openai", [True, False])
    @pytest.mark.parametrize("fail", [RedisTimeoutError("Redis did not answer within 2s"),
                                      MaxConnectionsError("Too many connections"), RedisConnectionError("refused")])
    async def test_a_503_with_retry_after(self, fail: Exception, openai: bool,
                                          caplog: pytest.LogCaptureFixture) -> None:
        @get("/thing", sync_to_thread=False)
        def thing() -> None:
            raise fail

        caplog.set_level("WARNING", logger="aiaas.errors")
        async with AsyncTestClient(_app(thing, openai=openai)) as client:
            r = await client.get("/thing")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.headers["content-type"].startswith(errors.PROBLEM_JSON)
        doc = r.json()
        assert doc["status"] == 503 and doc["code"] == "redis_unavailable" and "Redis" in doc["detail"]
        assert ("error" in doc) is openai
        assert "unhandled error" not in caplog.text and type(fail).__name__ in caplog.text

    async def test_other_errors_stay_500(self) -> None:
        @get("/thing", sync_to_thread=False)
        def thing() -> None:
            raise OSError("a file")  # OSError is Redis being unreachable only where a caller said so

        async with AsyncTestClient(_app(thing, openai=False)) as client:
            assert (await client.get("/thing")).status_code == 500


def _too_many_clients() -> Exception:
    """What SQLAlchemy raises when PostgreSQL refuses a connection past max_connections (as seen in CI)."""
    orig = asyncpg.TooManyConnectionsError("sorry, too many clients already")
    return sa_exc.DBAPIError.instance("SELECT 1", None, orig, Exception)


class TestPostgresNotAccepting:
    """PostgreSQL refusing or dropping connections reaches the client as a 503 to retry; any other database
    error is still the server's fault (500)."""

    @pytest.mark.parametrize("fail", [
        _too_many_clients(),
        sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached, connection timed out"),
        sa_exc.DBAPIError("SELECT 1", None, Exception("gone"), connection_invalidated=True),
    ], ids=["too-many-clients", "pool-timeout", "invalidated"])
    async def test_a_503_with_retry_after(self, fail: Exception, caplog: pytest.LogCaptureFixture) -> None:
        @get("/thing", sync_to_thread=False)
        def thing() -> None:
            raise fail

        caplog.set_level("WARNING", logger="aiaas.errors")
        async with AsyncTestClient(_app(thing, openai=True)) as client:
            r = await client.get("/thing")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        doc = r.json()
        assert doc["code"] == "database_unavailable" and "PostgreSQL" in doc["detail"]
        assert doc["error"]["type"] == "server_error"
        assert "unhandled error" not in caplog.text and "PostgreSQL unavailable" in caplog.text

    async def test_a_refused_connection_is_a_503_without_naming_a_store(self) -> None:
        @get("/thing", sync_to_thread=False)
        def thing() -> None:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")  # asyncpg connecting

        async with AsyncTestClient(_app(thing, openai=False)) as client:
            r = await client.get("/thing")
        assert r.status_code == 503 and r.json()["code"] == "dependency_unavailable"

    async def test_a_query_error_stays_500(self, caplog: pytest.LogCaptureFixture) -> None:
        @get("/thing", sync_to_thread=False)
        def thing() -> None:
            raise sa_exc.IntegrityError("INSERT", None, Exception("duplicate key value"))

        async with AsyncTestClient(_app(thing, openai=False)) as client:
            assert (await client.get("/thing")).status_code == 500
        assert "unhandled error" in caplog.text


def _app(handler: object, *, openai: bool) -> Litestar:
    return Litestar([handler], exception_handlers=errors.problem_handlers(openai=openai), logging_config=None)
