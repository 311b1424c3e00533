"""A running streamer (uvicorn on its own thread) in front of fake OpenAI-wire upstreams, and a catalog."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import uvicorn
from litestar import Request

from aiaas.entrypoints import streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelAccess, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.kernel.config import Settings
from aiaas.kernel.errors import Unauthenticated
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal
from fake_upstream import FakeUpstream
from support import free_port, wait_http

ORG = "0190a000-0000-7000-8000-000000000001"
RESTRICTED_ORG = "0190a000-0000-7000-8000-000000000002"
PRINCIPALS = {
    "member": Principal(kind="api_key", user_id="0190a000-0000-7000-8000-0000000000a1", org_id=ORG,
                        key_id="0190a000-0000-7000-8000-0000000000b1", org_role=OrgRole.MEMBER),
    "restricted-org": Principal(kind="api_key", user_id="0190a000-0000-7000-8000-0000000000a2",
                                org_id=RESTRICTED_ORG, key_id="0190a000-0000-7000-8000-0000000000b2",
                                org_role=OrgRole.MEMBER),
    "narrow-key": Principal(kind="api_key", user_id="0190a000-0000-7000-8000-0000000000a3", org_id=ORG,
                            key_id="0190a000-0000-7000-8000-0000000000b3", org_role=OrgRole.MEMBER,
                            allowed_models=frozenset({"test/chat"})),
    "viewer": Principal(kind="api_key", user_id="0190a000-0000-7000-8000-0000000000a4", org_id=ORG,
                        key_id="0190a000-0000-7000-8000-0000000000b4", org_role=OrgRole.VIEWER),
}


def test_principal(request: Request[Any, Any, Any]) -> Principal:
    """Stands in for API-key authentication: the bearer token names one of ``PRINCIPALS``."""
    auth = request.headers.get("authorization", "")
    token = auth.removeprefix("Bearer ").strip()
    if token not in PRINCIPALS:
        raise Unauthenticated("Incorrect API key provided.", code="invalid_api_key")
    return PRINCIPALS[token]


def _dep(name: str, up: FakeUpstream, upstream_model: str = "fake", **kw: Any) -> DeploymentSpec:
    return DeploymentSpec(name=name, provider="openai", upstream_model=upstream_model, base_url=up.base_url, **kw)


def catalog_specs(a: FakeUpstream, b: FakeUpstream, c: FakeUpstream, d: FakeUpstream) -> list[ModelSpec]:
    chat = ["chat", "completions"]
    return [
        ModelSpec(name="test/chat", capabilities=chat, deployments=[_dep("a", a)]),
        ModelSpec(name="test/no-usage", capabilities=chat, deployments=[_dep("a", a, "no-usage")]),
        ModelSpec(name="test/failover", capabilities=chat, deployments=[
            _dep("slow", a, "slow-first-byte", priority=0, first_byte_timeout=0.3),
            _dep("good", b, "fake", priority=1)]),
        ModelSpec(name="test/error", capabilities=chat, deployments=[_dep("a", a, "error-500")]),
        ModelSpec(name="test/ratelimit", capabilities=chat, deployments=[_dep("a", a, "rate-limit")]),
        ModelSpec(name="test/badreq", capabilities=chat, deployments=[_dep("a", a, "bad-request")]),
        ModelSpec(name="test/drop", capabilities=chat, deployments=[_dep("a", a, "drop-mid")]),
        ModelSpec(name="test/slow-stream", capabilities=chat, deployments=[_dep("a", a, "slow-stream")]),
        ModelSpec(name="test/embed", capabilities=["embeddings"], deployments=[_dep("a", a, "fake-embed")]),
        ModelSpec(name="test/pair", capabilities=chat, deployments=[
            _dep("c", c, weight=1, connect_timeout=0.5), _dep("d", d, weight=1, connect_timeout=0.5)]),
    ]


async def _seed(settings: Settings, specs: list[ModelSpec]) -> None:
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("inference") as session:
            for spec in specs:
                if await catalog_service.list_models(session=session) and any(
                        m.name == spec.name for m in await catalog_service.list_models(session=session)):
                    continue
                await catalog_service.create_model(session=session, spec=spec)
            await catalog_service.put_access(session=session, org_id=RESTRICTED_ORG,
                                             access=ModelAccess(models=["test/chat"]))
        await container.catalog.refresh_models([s.name for s in specs])
        await container.catalog.refresh_access([RESTRICTED_ORG])
    finally:
        await container.redis.aclose()
        await container.db.dispose()


class Running:
    """Handles on the running system for tests."""

    def __init__(self, base_url: str, upstreams: dict[str, FakeUpstream], container: Container,
                 settings: Settings) -> None:
        self.base_url = base_url
        self.upstreams = upstreams
        self.container = container
        self.settings = settings


@pytest.fixture(scope="session")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    ups = {name: FakeUpstream(free_port(), slow_seconds=1.5).start() for name in "abcd"}
    yield ups
    for up in ups.values():
        up.stop()


@pytest.fixture(scope="session")
def running(settings: Settings, upstreams: dict[str, FakeUpstream]) -> Iterator[Running]:
    s = msgspec.structs.replace(settings, inference_breaker_failures=2, inference_breaker_cooldown_seconds=1.0,
                                local_model_max_tokens=16)
    specs = catalog_specs(upstreams["a"], upstreams["b"], upstreams["c"], upstreams["d"])
    with_thread(_seed, s, specs)
    container = Container(s, role="streamer")
    app = RequestContext(streamer.create_app(container, principal_provider=test_principal), role="streamer")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", lifespan="on",
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="streamer")
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/health", timeout=30)
    yield Running(f"http://127.0.0.1:{port}/v1", upstreams, container, s)
    server.should_exit = True
    thread.join(30)


def with_thread(fn: Any, *args: Any) -> Any:
    """Run an async function to completion on a fresh loop in another thread."""
    out: list[Any] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(asyncio.run(fn(*args)))
        except BaseException as exc:
            err.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0] if out else None


def eventually(check: Any, *, timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
