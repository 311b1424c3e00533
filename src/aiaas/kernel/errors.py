"""Domain errors and their RFC 7807 problem documents.

Services raise subclasses of :class:`AppError`; they never raise HTTP exceptions. One set of Litestar
exception handlers (``problem_handlers``) turns every error the app can produce, its own and the
framework's (404, 405, 413, validation, unhandled), into ``application/problem+json``. Under the
OpenAI-compatible prefix the same document also carries OpenAI's ``error`` object, so OpenAI SDKs show
the message and map the status to their exception classes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from sqlalchemy import exc as sa_exc

from aiaas.kernel.redis import RedisUnavailable

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://aiaas.dev/problems/"

log = logging.getLogger("aiaas.errors")


class AppError(Exception):
    """Base of every domain error: carries an HTTP status, a problem type and an OpenAI error type."""

    status: ClassVar[int] = 400
    type_slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"
    openai_type: ClassVar[str] = "invalid_request_error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.param = param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class BadRequest(AppError):
    """The request is well-formed JSON but asks for something invalid."""


class ValidationFailed(AppError):
    """Input failed validation; ``extra['errors']`` lists the failing fields."""

    status = 422
    type_slug = "validation-error"
    title = "Validation failed"


class MethodNotAllowed(AppError):
    """The path exists but not for this method; set ``Allow`` in ``headers``."""

    status = 405
    type_slug = "method-not-allowed"
    title = "Method not allowed"


class BodyTooLarge(AppError):
    """The request body is over ``AIAAS_MAX_REQUEST_BODY_BYTES``."""

    status = 413
    type_slug = "payload-too-large"
    title = "Request body too large"


class Unauthenticated(AppError):
    """No or invalid credentials."""

    status = 401
    type_slug = "unauthenticated"
    title = "Authentication required"
    openai_type = "authentication_error"


class Forbidden(AppError):
    """Authenticated, but the principal lacks the permission."""

    status = 403
    type_slug = "forbidden"
    title = "Permission denied"
    openai_type = "permission_error"


class NotFound(AppError):
    """The resource does not exist, or belongs to another tenant (never 403 across tenants)."""

    status = 404
    type_slug = "not-found"
    title = "Not found"
    openai_type = "not_found_error"


class Conflict(AppError):
    """The request conflicts with the current state of the resource."""

    status = 409
    type_slug = "conflict"
    title = "Conflict"


class TooManyRequests(AppError):
    """A rate limit or throttle refused the request; set ``Retry-After`` in ``headers``."""

    status = 429
    type_slug = "rate-limited"
    title = "Too many requests"
    openai_type = "rate_limit_error"


class ServiceUnavailable(AppError):
    """A dependency or capacity limit stops the request for now."""

    status = 503
    type_slug = "service-unavailable"
    title = "Service unavailable"
    openai_type = "server_error"


class UpstreamError(AppError):
    """The model backend failed."""

    status = 502
    type_slug = "upstream-error"
    title = "Upstream error"
    openai_type = "server_error"


_STATUS_TITLES = {
    400: ("bad-request", "Bad request", "invalid_request_error"),
    401: ("unauthenticated", "Authentication required", "authentication_error"),
    403: ("forbidden", "Permission denied", "permission_error"),
    404: ("not-found", "Not found", "not_found_error"),
    405: ("method-not-allowed", "Method not allowed", "invalid_request_error"),
    409: ("conflict", "Conflict", "invalid_request_error"),
    413: ("payload-too-large", "Request body too large", "invalid_request_error"),
    415: ("unsupported-media-type", "Unsupported media type", "invalid_request_error"),
    422: ("validation-error", "Validation failed", "invalid_request_error"),
    429: ("rate-limited", "Too many requests", "rate_limit_error"),
    500: ("internal-error", "Internal server error", "server_error"),
    503: ("service-unavailable", "Service unavailable", "server_error"),
}


class OpenAIError(msgspec.Struct):
    """OpenAI's error object: `param` and `code` are always present (null when none), as its document requires."""

    message: str
    type: str
    param: str | None
    code: str | None


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 7807 problem document (plus ``request_id``, ``errors`` and OpenAI's ``error``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None
    code: str | None = None  # a stable, machine-readable reason (``privilege_escalation``), when there is one
    errors: list[dict[str, Any]] | None = None
    error: OpenAIError | None = None
    extensions: dict[str, Any] | None = None


_encoder = msgspec.json.Encoder()


def problem_for(
    *,
    status: int,
    detail: str,
    instance: str,
    request_id: str | None,
    type_slug: str | None = None,
    title: str | None = None,
    openai_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    openai: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> Problem:
    """Build the problem document for a status; ``openai`` adds OpenAI's ``error`` object."""
    default_slug, default_title, default_oa = _STATUS_TITLES.get(
        status, ("error", "Error", "server_error" if status >= 500 else "invalid_request_error")
    )
    return Problem(
        type=PROBLEM_BASE + (type_slug or default_slug),
        title=title or default_title,
        status=status,
        detail=detail,
        instance=instance,
        request_id=request_id,
        code=code,
        errors=errors,
        error=OpenAIError(message=detail, type=openai_type or default_oa, param=param, code=code)
        if openai
        else None,
        extensions=dict(extra) if extra else None,
    )


def encode_problem(problem: Problem) -> bytes:
    """A problem document as JSON bytes (extension members at the top level, per RFC 7807)."""
    if problem.extensions:
        doc = msgspec.to_builtins(problem)
        for key, value in doc.pop("extensions").items():
            doc.setdefault(key, value)
        return _encoder.encode(doc)
    return _encoder.encode(problem)


# Anthropic's error types by status (https://docs.anthropic.com/en/api/errors); 503 is its "overloaded".
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
                    413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error",
                    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def anthropic_error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status."""
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def encode_anthropic_problem(problem: Problem) -> bytes:
    """A problem document in Anthropic's error shape, for the Anthropic-compatible routes.

    Anthropic's clients read ``{"type": "error", "error": {"type", "message"}}``, so the top-level ``type``
    is ``"error"`` (a relative URI reference, which RFC 7807 allows) and the problem type URI moves to
    ``problem_type``; ``title``, ``status``, ``detail``, ``instance``, ``request_id`` and ``code`` stay
    where every other route has them.
    """
    doc = msgspec.to_builtins(problem)
    for key, value in (doc.pop("extensions", None) or {}).items():
        doc.setdefault(key, value)
    doc.pop("error", None)  # OpenAI's error object: Anthropic's takes its place
    error = {"type": anthropic_error_type(problem.status), "message": problem.detail}
    return _encoder.encode({"type": "error", "error": error, "problem_type": doc.pop("type"), **doc})


def render_problem(problem: Problem, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    """Encode a problem as an ``application/problem+json`` response."""
    return Response(
        content=encode_problem(problem),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=dict(headers or {}),
    )


def problem_of(exc: AppError, *, instance: str, request_id: str | None, openai: bool) -> Problem:
    """The problem document of a domain error."""
    errors = exc.extra.get("errors")
    extra = {k: v for k, v in exc.extra.items() if k != "errors"}
    return problem_for(
        status=exc.status,
        detail=exc.detail,
        instance=instance,
        request_id=request_id,
        type_slug=exc.type_slug,
        title=exc.title,
        openai_type=exc.openai_type,
        code=exc.code,
        param=exc.param,
        errors=errors,
        openai=openai,
        extra=extra or None,
    )


def _request_id(request: Request[Any, Any, Any]) -> str | None:
    return request.scope.get("state", {}).get("request_id")  # type: ignore[no-any-return]


def _app_error_handler(request: Request[Any, Any, Any], exc: AppError, openai: bool) -> Response[bytes]:
    problem = problem_of(exc, instance=request.url.path, request_id=_request_id(request), openai=openai)
    return render_problem(problem, exc.headers)


def _validation_errors(extra: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                out.append({k: v for k, v in item.items() if k in {"key", "message", "source"}})
    return out


def _http_exception_handler(
    request: Request[Any, Any, Any], exc: HTTPException, openai: bool
) -> Response[bytes]:
    status = exc.status_code
    detail = exc.detail or _STATUS_TITLES.get(status, ("", "Error", ""))[1]
    errors = None
    if isinstance(exc, ValidationException) or (status == 400 and exc.extra):
        errors = _validation_errors(exc.extra) or None
        if errors:
            # OpenAI answers invalid input with 400 invalid_request_error (the SDKs' BadRequestError);
            # the management API keeps 422 for it.
            status = 400 if openai else 422
            detail = "; ".join(f"{e.get('key') or 'body'}: {e.get('message')}" for e in errors)
    elif isinstance(exc.__cause__, SerializationException):
        detail = f"Request body is not valid JSON: {detail}"
    if status == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}"
    if status == 405:
        detail = f"Method {request.method} is not allowed on {request.url.path}"
    param = errors[0].get("key") if errors else None
    problem = problem_for(
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=_request_id(request),
        errors=errors,
        param=param,
        openai=openai,
    )
    headers = dict(exc.headers or {})
    return render_problem(problem, headers)


UNHANDLED_DETAIL = "The server failed to handle this request; the request id identifies it in the logs."
REDIS_DOWN_DETAIL = "A store this request needs (Redis) did not answer in time; retry shortly."
DATABASE_DOWN_DETAIL = "A store this request needs (PostgreSQL) is not accepting connections; retry shortly."
DEPENDENCY_DOWN_DETAIL = "A service this request needs refused the connection; retry shortly."

# Redis not answering (down, stalled past AIAAS_REDIS_TIMEOUT_SECONDS, a failover, a pool exhausted past
# the deadline) where no caller degraded on it: an outage for the client to retry, never a 500.
REDIS_DOWN: tuple[type[Exception], ...] = tuple(e for e in RedisUnavailable if e is not OSError)
# What PostgreSQL being unreachable can surface as: the pool's checkout timeout, an asyncpg error wrapped
# by SQLAlchemy (sorted by ``dependency_down``), or the socket's own error while connecting.
DEPENDENCY_DOWN: tuple[type[Exception], ...] = (*REDIS_DOWN, sa_exc.DBAPIError, sa_exc.TimeoutError, ConnectionError)
_DB_UNREACHABLE = (asyncpg.TooManyConnectionsError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError,
                   ConnectionError, TimeoutError)


def _database_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.TimeoutError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    seen: BaseException | None = exc
    for _ in range(8):  # SQLAlchemy wraps asyncpg's error one or two levels down
        if seen is None:
            return False
        if isinstance(seen, _DB_UNREACHABLE):
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


def dependency_down(exc: Exception) -> ServiceUnavailable | None:
    """The 503 (with ``Retry-After``) for Redis or PostgreSQL being unreachable; None for any other error."""
    if isinstance(exc, REDIS_DOWN):
        return ServiceUnavailable(REDIS_DOWN_DETAIL, code="redis_unavailable", headers={"Retry-After": "1"})
    if _database_unreachable(exc):
        return ServiceUnavailable(DATABASE_DOWN_DETAIL, code="database_unavailable", headers={"Retry-After": "2"})
    if isinstance(exc, ConnectionError):  # a socket refused or reset: asyncpg connecting, or another store
        return ServiceUnavailable(DEPENDENCY_DOWN_DETAIL, code="dependency_unavailable", headers={"Retry-After": "2"})
    return None


def store_of(down: ServiceUnavailable) -> str:
    """The store a ``dependency_down`` 503 is about, for the log line."""
    return {"redis_unavailable": "Redis", "database_unavailable": "PostgreSQL"}.get(down.code or "", "A dependency")


def _dependency_down_handler(request: Request[Any, Any, Any], exc: Exception, openai: bool) -> Response[bytes]:
    down = dependency_down(exc)
    if down is None:  # a database error that is not the database being unreachable
        return _unhandled_handler(request, exc, openai)
    log.warning("%s unavailable on %s %s: %s: %s", store_of(down), request.method, request.url.path,
                type(exc).__name__, exc)
    return _app_error_handler(request, down, openai)


def _unhandled_handler(request: Request[Any, Any, Any], exc: Exception, openai: bool) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    problem = problem_for(status=500, detail=UNHANDLED_DETAIL, instance=request.url.path,
                          request_id=_request_id(request), openai=openai)
    return render_problem(problem)


TOO_DEEP_DETAIL = "The JSON body is nested too deeply."


def _too_deep_handler(request: Request[Any, Any, Any], exc: RecursionError, openai: bool) -> Response[bytes]:
    # msgspec raises RecursionError for JSON nested deeper than the interpreter's recursion limit, while
    # decoding the body and before any handler runs: the client's input, not a server failure.
    log.warning("refused %s %s: %s", request.method, request.url.path, exc)
    status = 400 if openai else 422
    problem = problem_for(status=status, detail=TOO_DEEP_DETAIL, instance=request.url.path,
                          request_id=_request_id(request), code="json_too_deep", openai=openai)
    return render_problem(problem)


def problem_handlers(*, openai: bool = False) -> dict[type[Exception] | int, Callable[..., Response[Any]]]:
    """Exception handlers rendering every error as problem+json (``openai`` adds OpenAI's ``error``)."""
    return {
        AppError: functools.partial(_app_error_handler, openai=openai),
        HTTPException: functools.partial(_http_exception_handler, openai=openai),
        RecursionError: functools.partial(_too_deep_handler, openai=openai),
        **{e: functools.partial(_dependency_down_handler, openai=openai) for e in DEPENDENCY_DOWN},
        Exception: functools.partial(_unhandled_handler, openai=openai),
    }

__all__ = [
    "DATABASE_DOWN_DETAIL",
    "DEPENDENCY_DOWN",
    "DEPENDENCY_DOWN_DETAIL",
    "PROBLEM_JSON",
    "REDIS_DOWN",
    "REDIS_DOWN_DETAIL",
    "TOO_DEEP_DETAIL",
    "UNHANDLED_DETAIL",
    "AppError",
    "BadRequest",
    "BodyTooLarge",
    "Conflict",
    "Forbidden",
    "MethodNotAllowed",
    "NotFound",
    "Problem",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthenticated",
    "UpstreamError",
    "ValidationFailed",
    "dependency_down",
    "encode_problem",
    "problem_for",
    "problem_handlers",
    "problem_of",
    "render_problem",
    "store_of",
]
