"""Stopping Redis turns /ready into 503 naming Redis, and back to 200 when it returns, with no restart.

The test runs its own redis-server on a free port (so the shared one stays up for other tests) and
kills and restarts it under a running app.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from aiaas.entrypoints import api, streamer, worker
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from support import OwnRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")


async def _ready(client: AsyncTestClient[Any]) -> Any:
    return await client.get("/ready")


async def _wait_for(client: AsyncTestClient[Any], status: int, attempts: int = 50) -> Any:
    r = None
    for _ in range(attempts):
        r = await _ready(client)
        if r.status_code == status:
            return r
        await asyncio.sleep(0.1)
    return r


@pytest.mark.parametrize("factory", [api.create_app, worker.create_app], ids=["api", "worker"])
class TestRedisOutage:
    async def test_ready_follows_redis(self, factory: Any, settings: Settings, own_redis: OwnRedis) -> None:
        s = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
        app = RequestContext(factory(Container(s, role="api")), role="test")
        async with AsyncTestClient(app=app) as client:
            r = await _wait_for(client, 200)
            assert r.status_code == 200

            own_redis.stop()
            r = await _wait_for(client, 503)
            assert r.status_code == 503
            assert r.headers["content-type"].startswith("application/problem+json")
            doc = r.json()
            assert doc["failing"] == ["redis"]
            assert "redis" in doc["detail"]
            assert doc["checks"]["postgres"] == "ok"

            own_redis.start()
            r = await _wait_for(client, 200)
            assert r.status_code == 200, r.text


class TestStreamerDegradesOnRedisOutage:
    """The streamer stays ready without Redis (per-org policy decides each request) and says so."""

    async def test_ready_says_degraded(self, settings: Settings, own_redis: OwnRedis) -> None:
        s = msgspec.structs.replace(settings, redis_url=own_redis.url)
        app = RequestContext(streamer.create_app(Container(s, role="streamer")), role="test")
        async with AsyncTestClient(app=app) as client:
            r = await _wait_for(client, 200)
            assert r.json()["status"] == "ok"
            assert r.json()["checks"]["limits"] == "enforced"

            own_redis.stop()
            doc: Any = None
            for _ in range(50):
                r = await _ready(client)
                doc = r.json()
                if doc.get("status") == "degraded":
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200
            assert doc["status"] == "degraded"
            assert doc["degraded"] == ["redis"]
            assert doc["checks"]["redis"] != "ok"
            assert doc["checks"]["postgres"] == "ok"
            assert doc["checks"]["limits"].startswith("redis unavailable: not enforced")

            own_redis.start()
            for _ in range(50):
                r = await _ready(client)
                if r.json().get("status") == "ok":
                    break
                await asyncio.sleep(0.1)
            assert r.json()["status"] == "ok", r.text
            assert "degraded" not in r.json()
            assert r.json()["checks"]["limits"] == "enforced"
