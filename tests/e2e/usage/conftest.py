"""Streamers (uvicorn on threads, each its own Container) in front of a fake upstream, real identities,
and a worker process: the metering promises proved through the real inference path."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import uvicorn

from aiaas.entrypoints import streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole
from aiaas.usage import service as usage_service
from aiaas.usage.schemas import UsagePolicyUpdate
from e2e.inference.conftest import with_thread
from fake_upstream import FakeUpstream
from identity_support import Org, org_with_keys
from support import free_port, stop_process, wait_http

CHAT = "usage/chat"
EMBED = "usage/embed"
FAILING = "usage/failing"  # its upstream answers 500
# What the fake upstream reports for every chat answer, streamed or not.
PROMPT_TOKENS, COMPLETION_TOKENS = 7, 3


@dataclass
class Streamer:
    """One running streamer process stand-in: its own Container, loop and port."""

    base_url: str
    container: Container
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_streamer(settings: Settings) -> Streamer:
    """A streamer on its own thread and port; returns once it answers ``/health``."""
    container = Container(settings, role="streamer")
    app = RequestContext(streamer.create_app(container), role="streamer")
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", lifespan="on", log_config=None,
                            access_log=False)
    # Imports uvicorn's protocol modules here, not on the server's thread: two threads importing the same
    # package at once can fail one of them (KeyError: 'uvicorn.protocols').
    config.load()
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"streamer-{port}")
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/health")
    return Streamer(f"http://127.0.0.1:{port}/v1", container, server, thread)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A real ``aiaas serve --role worker`` process on this session's services."""
    env = {**env, "AIAAS_WORKER_PORT": str(free_port()), "AIAAS_USAGE_LEDGER_BATCH_SIZE": "20",
           "AIAAS_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([sys.executable, "-m", "aiaas", "serve", "--role", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)


async def _seed(settings: Settings, up: FakeUpstream) -> None:
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("inference") as session:
            existing = {m.name for m in await catalog_service.list_models(session=session)}
            for name, caps, upstream_model in ((CHAT, ["chat", "completions"], "fake"),
                                               (EMBED, ["embeddings"], "fake-embed"),
                                               (FAILING, ["chat", "completions"], "error-500")):
                if name not in existing:
                    dep = DeploymentSpec(name="u", provider="openai", upstream_model=upstream_model,
                                         base_url=up.base_url)
                    await catalog_service.create_model(session=session,
                                                       spec=ModelSpec(name=name, capabilities=caps, deployments=[dep]))
        await container.catalog.refresh_models([CHAT, EMBED, FAILING])
    finally:
        await container.redis.aclose()
        await container.db.dispose()


async def _declare_usage_queue(settings: Settings) -> None:
    from aiaas.inference.events import CompletionRecorded
    from aiaas.kernel.broker import Broker, Subscription

    broker = Broker(settings)
    try:
        ch = await (await broker.connect()).channel()
        sub = Subscription(consumer="usage", source="inference", routing_keys=[CompletionRecorded.routing_key],
                           handler=None)  # type: ignore[arg-type]
        await broker.declare_subscription(sub, ch)
        await ch.close()
    finally:
        await broker.close()


@pytest.fixture(scope="session")
def usage_upstream(session_settings: Settings) -> Iterator[FakeUpstream]:
    """A fake OpenAI upstream serving the ``usage/*`` models of the catalog."""
    up = FakeUpstream(free_port()).start()
    with_thread(_seed, session_settings, up)
    # The usage queue exists before the first event, as it does in production once a worker has run.
    with_thread(_declare_usage_queue, session_settings)
    yield up
    up.stop()


async def _org(settings: Settings, key_kw: dict[str, Any], policy: UsagePolicyUpdate | None) -> Org:
    container = Container(settings, role="api")
    try:
        org = await org_with_keys(container, members={"member": OrgRole.MEMBER}, **key_kw)
        if policy is not None:
            async with container.db.unit_of_work("usage") as session:
                await usage_service.put_policy(session, org.id, policy)
            await container.usage_policies.invalidate(org.id)
        return org
    finally:
        await container.redis.aclose()
        await container.db.dispose()


def make_org(settings: Settings, *, policy: UsagePolicyUpdate | None = None, **key_kw: Any) -> Org:
    """A real org (owner + member, each with an API key made with ``key_kw``) and its usage policy."""
    return with_thread(_org, settings, key_kw, policy)  # type: ignore[no-any-return]


def fast_settings(settings: Settings, **kw: Any) -> Settings:
    """The session's settings with quick event-publish timeouts (outages are noticed in a second)."""
    return msgspec.structs.replace(settings, event_publish_timeout_seconds=1.0, **kw)


def unique() -> str:
    return uuid.uuid4().hex[:8]
