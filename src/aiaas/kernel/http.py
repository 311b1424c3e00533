"""The outer ASGI layer every HTTP role shares: request ids, the server span, metrics and access logs.

It wraps the whole Litestar app rather than sitting in Litestar's middleware stack, so that requests
that match no route (404, 405) get a request id, a span and a metric too. The route template is read
from the scope after Litestar has routed the request, which keeps metric labels bounded.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiaas.kernel import metrics
from aiaas.kernel.errors import PROBLEM_JSON, encode_problem, problem_for
from aiaas.kernel.logs import request_id_var
from aiaas.kernel.tracing import extract_context, tracer

ASGIApp = Any
Scope = dict[str, Any]

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_access = logging.getLogger("aiaas.access")
_UNMATCHED = "<unmatched>"


def new_request_id() -> str:
    """A fresh request id (``req_`` + 32 hex digits, as OpenAI's ``x-request-id`` looks)."""
    return "req_" + uuid.uuid4().hex


class RequestContext:
    """ASGI wrapper adding ``x-request-id``, a server span, HTTP metrics and one access-log line."""

    def __init__(self, app: ASGIApp, *, role: str, access_log: bool = True) -> None:
        self.app = app
        self.role = role
        self.access_log = access_log
        self._tracer = tracer("aiaas.http")
        self._in_flight = metrics.HTTP_IN_FLIGHT.labels(role)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = scope["headers"]
        incoming_id = None
        carrier: dict[str, str] = {}
        for name, value in headers:
            if name == b"x-request-id":
                incoming_id = value.decode("latin-1")
            elif name == b"traceparent" or name == b"tracestate":
                carrier[name.decode()] = value.decode("latin-1")
        request_id = incoming_id if incoming_id and _VALID_REQUEST_ID.match(incoming_id) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = request_id_var.set(request_id)
        method = scope["method"]
        span = self._tracer.start_span(
            method,
            context=extract_context(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        )
        status_holder = [500]
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        self._in_flight.inc()
        try:
            with trace.use_span(span, end_on_exit=False):
                await self.app(scope, receive, send_wrapper)
        except BaseException:
            span.set_status(Status(StatusCode.ERROR))
            raise
        finally:
            self._in_flight.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or _UNMATCHED
            status = status_holder[0]
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            metrics.HTTP_REQUESTS.labels(self.role, method, route, str(status)).inc()
            metrics.HTTP_DURATION.labels(self.role, method, route).observe(elapsed)
            if self.access_log:
                with trace.use_span(span, end_on_exit=False):
                    _access.info(
                        "%s %s %s",
                        method,
                        scope["path"],
                        status,
                        extra={"status": status, "route": route, "duration_ms": round(elapsed * 1000, 3),
                               "client": (scope.get("client") or ("", 0))[0]},
                    )
            request_id_var.reset(token)


_NEVER_SHED = frozenset({"/health", "/ready", "/metrics"})


class LoadShedder:
    """ASGI wrapper answering a fast 503 problem (``Retry-After: 1``) once ``limit`` requests are in flight.

    Without it an overloaded management API queues without bound: at twice the rate it could serve, most
    requests waited 30 s and timed out, and the ones it did serve were as late. With a bound, the excess
    is refused in microseconds, the load balancer or the client retries elsewhere or later, and what is
    admitted is served at the normal latency. Probes and metrics are never shed (an orchestrator must
    not see a busy pod as a dead one). The count is this process's own, like its connections.
    """

    def __init__(self, app: ASGIApp, *, role: str, limit: int) -> None:
        self.app = app
        self.role = role
        self.limit = limit
        self.in_flight = 0
        self._shed = metrics.HTTP_SHED.labels(role)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in _NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self._shed.inc()
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Any) -> None:
        request_id = (scope.get("state") or {}).get("request_id")
        body = encode_problem(problem_for(
            status=503, detail=f"The server is at its limit of {self.limit} requests in flight; retry shortly.",
            instance=scope["path"], request_id=request_id, type_slug="overloaded", title="Overloaded",
            openai_type="server_error", code="overloaded"))
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
