"""Problem documents: RFC 7807 fields always, OpenAI's error object on the inference endpoints."""

from __future__ import annotations

import msgspec
import pytest

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
