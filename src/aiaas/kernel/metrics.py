"""Prometheus metrics, correct under several server worker processes.

When ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI sets it whenever it forks workers), every process
writes its samples to files there and ``/metrics`` aggregates them with ``MultiProcessCollector``;
otherwise the default registry (with process and platform collectors) is served directly.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets tuned for a gateway: sub-millisecond overhead up to minute-long generations.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "aiaas_http_requests_total",
    "HTTP requests handled, by role, method, route template and status.",
    ["role", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "aiaas_http_request_duration_seconds",
    "Time from request start to the end of the response body, by role, method and route template.",
    ["role", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_SHED = Counter(
    "aiaas_http_shed_total",
    "Requests refused with 503 because the process was at its in-flight limit (AIAAS_API_MAX_IN_FLIGHT).",
    ["role"],
)
HTTP_IN_FLIGHT = Gauge(
    "aiaas_http_requests_in_flight",
    "Requests being handled right now.",
    ["role"],
    multiprocess_mode="livesum",
)
DEPENDENCY_UP = Gauge(
    "aiaas_dependency_up",
    "1 when the last readiness check reached the dependency, else 0.",
    ["role", "dependency"],
    multiprocess_mode="max",
)


def multiprocess_enabled() -> bool:
    """Whether samples are shared across worker processes through files."""
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """Tell the multiprocess collector a worker exited, so its live gauges stop counting."""
    if multiprocess_enabled():
        _mp.mark_process_dead(pid)


def render_latest() -> tuple[bytes, str]:
    """The Prometheus exposition text of every process of this server."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)
        # Process metrics of the process answering; per-worker files do not carry them.
        ProcessCollector(registry=registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
