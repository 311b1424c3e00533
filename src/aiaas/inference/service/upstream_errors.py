"""What a tenant is told when every deployment failed: a safe summary, never the upstream's own words.

An upstream is whatever URL a platform admin configured, and its error bodies are not ours to pass on:
one that is not an OpenAI-wire server (an internal service, a proxy's HTML page) could put anything in
them. So a refusal (4xx) is passed on only as an OpenAI-shaped error: its ``message`` (control
characters stripped, at most ``MAX_MESSAGE`` characters) when the body is OpenAI's error JSON, its
``code`` and ``param`` when they look like identifiers, and a status the tenant can act on. A 401, 403
or 404 from an upstream is the deployment's fault (its credential, its model name), not the caller's:
it becomes a 502 that names no upstream detail, since passing a 401 on would make a client believe its
own key was refused.
"""

from __future__ import annotations

import re

import msgspec

from aiaas.inference.providers.base import UpstreamFailure
from aiaas.inference.schemas import CatalogModel, ErrorBodyPeek
from aiaas.inference.service.routing import BreakerState, retry_after_seconds
from aiaas.kernel.errors import AppError, ServiceUnavailable, TooManyRequests, UpstreamError

MAX_MESSAGE = 500
_IDENT = re.compile(r"^[A-Za-z0-9_.:\-\[\]]{1,64}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_OPENAI_TYPES = frozenset({"invalid_request_error", "not_found_error", "rate_limit_error", "server_error"})
_error_peek = msgspec.json.Decoder(ErrorBodyPeek).decode


class GatewayTimeout(AppError):
    """The upstream did not answer in time."""

    status = 504
    type_slug = "gateway-timeout"
    title = "Gateway timeout"
    openai_type = "server_error"


class UpstreamRejected(AppError):
    """The upstream refused the request (a 4xx other than 429): a safe summary of it is passed on."""


def _ident(value: object) -> str | None:
    text = str(value) if value is not None else None
    return text if text is not None and _IDENT.match(text) else None


def _safe_message(text: str | None) -> str | None:
    if not text:
        return None
    cleaned = _CONTROL.sub(" ", text).strip()
    return cleaned[:MAX_MESSAGE] or None


def rejection(status: int | None, body: bytes | None) -> AppError:
    """The error for a tenant whose request an upstream refused with ``status`` (a 4xx but 429)."""
    status = status or 400
    if status in (401, 403, 404, 407):
        return UpstreamError(f"The model's upstream refused the gateway's request (HTTP {status}); the "
                             "deployment needs attention from a platform admin.", code="upstream_misconfigured")
    message = oa_type = code = param = None
    if body:
        try:
            peek = _error_peek(body)
        except (msgspec.DecodeError, RecursionError):
            peek = None
        if peek is not None and peek.error is not None and not isinstance(peek.error, str):
            message = _safe_message(peek.error.message)
            oa_type = peek.error.type if peek.error.type in _OPENAI_TYPES else None
            code, param = _ident(peek.error.code), _ident(peek.error.param)
    err = UpstreamRejected(message or f"The model's upstream refused the request (HTTP {status}).",
                           code=code, param=param)
    err.status = 413 if status == 413 else 422 if status == 422 else 400
    if oa_type:
        err.openai_type = oa_type
    return err


def final_error(last: UpstreamFailure | None, model: CatalogModel, breaker: BreakerState, now: float) -> AppError:
    """The error to answer with when no deployment of ``model`` answered (``last``: the last failure)."""
    name = model.name
    if last is None:
        wait = retry_after_seconds(model.deployments, breaker, now=now)
        return ServiceUnavailable(f"Every deployment of `{name}` is recovering; retry in {wait}s.",
                                  code="no_healthy_deployment", headers={"Retry-After": str(wait)})
    if last.kind == "status_4xx":
        return rejection(last.status, last.body)
    headers = {"Retry-After": last.retry_after} if last.retry_after and last.retry_after.isdigit() else {}
    if last.kind == "status_429":
        return TooManyRequests(f"The upstream of `{name}` is rate limiting; retry later.",
                               code="upstream_rate_limited", headers=headers)
    if last.kind == "overloaded":
        return ServiceUnavailable(last.detail, code="model_overloaded", headers=headers or {"Retry-After": "1"})
    if last.kind == "timeout":
        return GatewayTimeout(f"The upstream of `{name}` did not answer in time.", code="upstream_timeout")
    return UpstreamError(f"The upstream of `{name}` failed ({last.kind}).", code="upstream_error")
