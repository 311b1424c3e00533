"""Integration fixtures: the real role apps against this session's services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext


async def _client(role: str, settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    from aiaas.entrypoints import api, streamer, worker

    factory = {"api": api.create_app, "streamer": streamer.create_app, "worker": worker.create_app}[role]
    app = RequestContext(factory(Container(settings, role=role)), role=role)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
async def api_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The management API app, lifespan run, over real services."""
    async for c in _client("api", settings):
        yield c


@pytest.fixture
async def streamer_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The inference app, lifespan run, over real services."""
    async for c in _client("streamer", settings):
        yield c


@pytest.fixture
async def worker_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The worker's observability app (consumers started), over real services."""
    async for c in _client("worker", settings):
        yield c


@pytest.fixture(params=["api", "streamer", "worker"])
async def role_client(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """Each HTTP role's app in turn."""
    async for c in _client(request.param, settings):
        yield c


@pytest.fixture
async def running_worker(settings: Settings) -> AsyncIterator[Container]:
    """A worker's container with its consumers running (in this process), stopped after the test."""
    from aiaas.entrypoints.worker import ConsumerRuntime

    container = Container(settings, role="worker")
    await container.start()
    runtime = ConsumerRuntime(container)
    await runtime.start()
    # Every subscription consuming (its queue declared) before the test publishes: an event published to an
    # exchange no queue is bound to yet is dropped. Bounded generously for a loaded machine.
    wanted = len(runtime._subscriptions())
    for _ in range(600):
        if len(runtime._stops) >= wanted:
            break
        await asyncio.sleep(0.05)
    assert len(runtime._stops) >= wanted, "the worker's consumers did not start within 30 s"
    yield container
    await runtime.stop()
    await container.stop()

