"""/health, /ready and /metrics on every role, against real PostgreSQL, Redis and RabbitMQ."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient


class TestObservabilityEndpoints:
    async def test_health_is_ok(self, role_client: AsyncTestClient[Any]) -> None:
        client = role_client
        r = await client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
        assert r.headers["x-request-id"].startswith("req_")

    async def test_ready_checks_every_dependency(self, role_client: AsyncTestClient[Any],
                                                 request: pytest.FixtureRequest) -> None:
        client = role_client
        r = await client.get("/ready")
        assert r.status_code == 200, r.text
        expected = {"postgres": "ok", "redis": "ok", "rabbitmq": "ok"}
        if request.node.callspec.params["role_client"] == "streamer":
            expected["limits"] = "enforced"  # the streamer also reports its rate limiter
        assert r.json()["checks"] == expected

    async def test_metrics_are_prometheus_text(self, role_client: AsyncTestClient[Any]) -> None:
        client = role_client
        await client.get("/health")
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "# TYPE aiaas_http_requests_total counter" in r.text
        assert 'route="/health"' in r.text
        assert "process_resident_memory_bytes" in r.text


class TestRequestIds:
    async def test_incoming_request_id_is_kept(self, api_client: AsyncTestClient[Any]) -> None:
        r = await api_client.get("/health", headers={"x-request-id": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"

    async def test_unsafe_request_id_is_replaced(self, api_client: AsyncTestClient[Any]) -> None:
        r = await api_client.get("/health", headers={"x-request-id": "bad id\twith spaces"})
        assert r.headers["x-request-id"].startswith("req_")


class TestMetricsLabels:
    async def test_unmatched_routes_share_one_label(self, api_client: AsyncTestClient[Any]) -> None:
        for i in range(3):
            await api_client.get(f"/no/such/{i}")
        text = (await api_client.get("/metrics")).text
        assert 'route="<unmatched>"' in text
        assert "/no/such/1" not in text
