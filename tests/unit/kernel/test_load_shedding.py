"""An overloaded management API refuses the excess at once instead of queueing it without bound."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aiaas.kernel import metrics
from aiaas.kernel.http import LoadShedder


class Held:
    """An app whose requests wait until released, so the test decides how many are in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(app: Any, path: str = "/v1/orgs") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    await app({"type": "http", "path": path, "method": "GET", "headers": [], "state": {"request_id": "req_1"}},
              receive, send)
    return sent


def _shed_count() -> float:
    return metrics.HTTP_SHED.labels("test")._value.get()  # type: ignore[attr-defined,no-any-return]


class TestLoadShedder:
    async def test_past_the_limit_a_fast_problem_with_retry_after(self) -> None:
        inner = Held()
        app = LoadShedder(inner, role="test", limit=2)
        before = _shed_count()
        held = [asyncio.create_task(call(app)) for _ in range(2)]
        while inner.entered < 2:
            await asyncio.sleep(0)
        refused = await asyncio.wait_for(call(app), timeout=1)  # answered without waiting for the others
        start = refused[0]
        assert start["status"] == 503
        headers = dict(start["headers"])
        assert headers[b"content-type"] == b"application/problem+json"
        assert headers[b"retry-after"] == b"1"
        doc = json.loads(refused[1]["body"])
        assert doc["status"] == 503 and doc["type"].endswith("/overloaded") and doc["request_id"] == "req_1"
        assert _shed_count() == before + 1
        inner.release.set()
        for done in await asyncio.gather(*held):
            assert done[0]["status"] == 200
        assert app.in_flight == 0
        # Capacity is back: the next request is served.
        assert (await call(app))[0]["status"] == 200

    async def test_probes_and_metrics_are_never_shed(self) -> None:
        inner = Held()
        app = LoadShedder(inner, role="test", limit=1)
        held = asyncio.create_task(call(app))
        while inner.entered < 1:
            await asyncio.sleep(0)
        probes = [asyncio.create_task(call(app, path)) for path in ("/health", "/ready", "/metrics")]
        while inner.entered < 4:
            await asyncio.sleep(0)
        inner.release.set()
        assert [r[0]["status"] for r in await asyncio.gather(held, *probes)] == [200, 200, 200, 200]

    async def test_a_failing_request_frees_its_place(self) -> None:
        async def boom(scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("boom")

        app = LoadShedder(boom, role="test", limit=1)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await call(app)
        assert app.in_flight == 0
