"""``/health``, ``/ready`` and ``/metrics``, the same on every role.

``/health`` is liveness and touches nothing. ``/ready`` checks each dependency the role uses,
concurrently and with a short timeout, and answers 503 problem+json naming every failing one; it never
caches, so it turns green again as soon as the dependency returns. A role may declare some dependencies
*degradable* (the streamer: Redis, whose outage each org's policy handles): when only those fail,
``/ready`` stays 200 with ``status: "degraded"``, the failing ones listed under ``degraded``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from aiaas.kernel import metrics
from aiaas.kernel.errors import problem_for, render_problem

Check = Callable[[], Awaitable[None]]

PUBLIC = {"public": True}


class HealthStatus(msgspec.Struct):
    """Liveness answer."""

    status: str


class ReadyStatus(msgspec.Struct, omit_defaults=True):
    """Readiness answer: ``ok`` (or ``degraded``) and the state of each dependency checked."""

    status: str
    checks: dict[str, str]
    degraded: list[str] = msgspec.field(default_factory=list)


async def run_checks(checks: Mapping[str, Check], timeout: float) -> dict[str, str]:
    """Run every check concurrently; map each name to ``ok`` or a short reason."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return f"timed out after {timeout:g}s"
        except Exception as exc:  # any failure of a dependency means "not ready", whatever its type
            return f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    return dict(zip(names, results, strict=True))


def observability_handlers(
    *, role: str, checks: Mapping[str, Check], timeout: float,
    extra_state: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None,
    degradable: Collection[str] = (),
    metrics_token: str | None = None,
    metrics_open: bool = True,
) -> list[HTTPRouteHandler]:
    """The three observability routes for one role (public: no authentication).

    ``extra_state`` gets the check results and adds role-specific entries to the answer; a failing check
    named in ``degradable`` leaves the role ready (``status: "degraded"``). ``metrics_token`` guards
    ``/metrics``; without one it answers only when ``metrics_open``.
    """
    gauges = {name: metrics.DEPENDENCY_UP.labels(role, name) for name in checks}

    @get("/health", opt=PUBLIC, tags=["observability"], summary="Liveness", include_in_schema=True,
         sync_to_thread=False)
    def health() -> HealthStatus:
        """Liveness: answers 200 while the process can serve; checks no dependency."""
        return HealthStatus(status="ok")

    @get("/ready", opt=PUBLIC, tags=["observability"], summary="Readiness",
         responses=None)
    async def ready(request: Request[Any, Any, Any]) -> Response[Any]:
        """Readiness: 200 when every dependency of this role answers (``degraded`` when only a dependency the
        role can serve without fails); 503 problem+json naming the failing ones."""
        results = await run_checks(checks, timeout)
        for name, result in results.items():
            gauges[name].set(1 if result == "ok" else 0)
        extra = dict(extra_state(results)) if extra_state else {}
        failing = {n: r for n, r in results.items() if r != "ok"}
        if failing.keys() - set(degradable):
            problem = problem_for(
                status=503,
                type_slug="not-ready",
                title="Not ready",
                detail="Unavailable: " + ", ".join(f"{n} ({r})" for n, r in failing.items()),
                instance=request.url.path,
                request_id=request.scope.get("state", {}).get("request_id"),
                extra={"checks": results, "failing": sorted(failing), **extra},
            )
            return render_problem(problem)
        if failing:
            return Response(ReadyStatus(status="degraded", checks={**results, **extra}, degraded=sorted(failing)))
        return Response(ReadyStatus(status="ok", checks={**results, **extra}))

    expected = f"Bearer {metrics_token}".encode() if metrics_token else None

    @get("/metrics", opt=PUBLIC, tags=["observability"], summary="Prometheus metrics",
         sync_to_thread=False, media_type="text/plain")
    def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
        """Prometheus exposition text, aggregated over every worker process of this server.

        With ``AIAAS_METRICS_TOKEN`` set it needs ``Authorization: Bearer <token>`` (401 otherwise); without
        one it is open in development and test and refused in production (403), since its labels describe
        the platform's tenants, models and deployments."""
        if expected is None and metrics_open:
            body, content_type = metrics.render_latest()
            return Response(body, media_type=content_type)
        rid = request.scope.get("state", {}).get("request_id")
        if expected is None:
            return render_problem(problem_for(
                status=403, detail="/metrics is off in production until AIAAS_METRICS_TOKEN is set.",
                instance=request.url.path, request_id=rid, code="metrics_token_unset"))
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return render_problem(problem_for(
                status=401, detail="/metrics needs the metrics bearer token.", instance=request.url.path,
                request_id=rid, code="metrics_token_required"), headers={"WWW-Authenticate": "Bearer"})
        body, content_type = metrics.render_latest()
        return Response(body, media_type=content_type)

    return [health, ready, metrics_endpoint]
