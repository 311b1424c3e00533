"""A running streamer (uvicorn on its own thread) in front of fake OpenAI-wire upstreams, and a catalog."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import uvicorn

from aiaas.auth import api as auth_api
from aiaas.entrypoints import streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelAccess, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal, Scope
from aiaas.orgs import api as orgs_api
from fake_upstream import FakeUpstream
from support import FIXTURE_BCRYPT_ROUNDS, free_port, wait_http

PASSWORD = "correct horse battery staple"  # pragma: allowlist secret


class Identities(msgspec.Struct):
    """Real users, orgs and API keys, made through the identity services (no stand-ins)."""

    org_id: str
    restricted_org_id: str
    keys: dict[str, str]  # "member", "restricted-org", "narrow-key", "viewer" -> sk-... key
    key_ids: dict[str, str]
    user_ids: dict[str, str]


async def _person(container: Container, label: str) -> Any:
    email = f"{label}-{uuid.uuid4().hex[:10]}@example.com"
    async with container.db.unit_of_work("auth") as s:
        return await auth_api.create_user(s, email=email, password=PASSWORD, rounds=FIXTURE_BCRYPT_ROUNDS,
                                          actor=None)


async def _key(container: Container, *, user: Any, org_id: str, role: OrgRole, **kw: Any) -> Any:
    actor = Principal(kind="session", user_id=user.id, org_id=org_id, org_role=role)
    async with container.db.unit_of_work("auth") as s:
        return await auth_api.create_key(s, org_id=org_id, actor=actor,
                                         data=auth_api.KeyCreate(name="e2e", scopes=[Scope.INFERENCE], **kw))


async def make_identities(settings: Settings) -> Identities:
    """Two orgs; in the first a member, a viewer and a member's key limited to ``test/chat``."""
    container = Container(settings, role="api")
    try:
        owner = await _person(container, "owner")
        member = await _person(container, "member")
        viewer = await _person(container, "viewer")
        outsider_owner = await _person(container, "restricted")
        actor = Principal(kind="session", user_id=owner.id)
        async with container.db.unit_of_work("orgs") as o, container.db.unit_of_work("auth") as a:
            org = await orgs_api.create_org(o, name=f"e2e-{uuid.uuid4().hex[:6]}", owner_id=owner.id, actor=actor)
            as_owner = Principal(kind="session", user_id=owner.id, org_id=org.id, org_role=OrgRole.OWNER)
            await orgs_api.add_member(o, a, org_id=org.id, email=member.email, role=OrgRole.MEMBER, actor=as_owner)
            await orgs_api.add_member(o, a, org_id=org.id, email=viewer.email, role=OrgRole.VIEWER, actor=as_owner)
            restricted = await orgs_api.create_org(o, name=f"e2e-r-{uuid.uuid4().hex[:6]}",
                                                   owner_id=outsider_owner.id, actor=None)
        made = {
            "member": await _key(container, user=member, org_id=org.id, role=OrgRole.MEMBER),
            "narrow-key": await _key(container, user=member, org_id=org.id, role=OrgRole.MEMBER,
                                     allowed_models=["test/chat"]),
            "viewer": await _key(container, user=viewer, org_id=org.id, role=OrgRole.VIEWER),
            "restricted-org": await _key(container, user=outsider_owner, org_id=restricted.id, role=OrgRole.OWNER),
        }
        return Identities(org_id=org.id, restricted_org_id=restricted.id,
                          keys={name: k.key for name, k in made.items()},
                          key_ids={name: k.api_key.id for name, k in made.items()},
                          user_ids={"member": member.id, "viewer": viewer.id, "owner": owner.id})
    finally:
        await container.redis.aclose()
        await container.db.dispose()


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
        ModelSpec(name="test/agent", capabilities=chat, deployments=[_dep("a", a, "agent")]),
        ModelSpec(name="test/native", capabilities=chat, deployments=[
            _dep("a", a, "native", native_apis=["responses", "messages"])]),
        ModelSpec(name="test/native-drop", capabilities=chat, deployments=[
            _dep("a", a, "native-drop", native_apis=["responses", "messages"])]),
        ModelSpec(name="test/embed", capabilities=["embeddings"], deployments=[_dep("a", a, "fake-embed")]),
        ModelSpec(name="test/pair", capabilities=chat, deployments=[
            _dep("c", c, weight=1, connect_timeout=0.5), _dep("d", d, weight=1, connect_timeout=0.5)]),
    ]


async def _seed(settings: Settings, specs: list[ModelSpec], restricted_org: str) -> None:
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("inference") as session:
            for spec in specs:
                if await catalog_service.list_models(session=session) and any(
                        m.name == spec.name for m in await catalog_service.list_models(session=session)):
                    continue
                await catalog_service.create_model(session=session, spec=spec)
            await catalog_service.put_access(session=session, org_id=restricted_org,
                                             access=ModelAccess(models=["test/chat"]))
        await container.catalog.refresh_models([s.name for s in specs])
        await container.catalog.refresh_access([restricted_org])
    finally:
        await container.redis.aclose()
        await container.db.dispose()


class Running:
    """Handles on the running system for tests."""

    def __init__(self, base_url: str, upstreams: dict[str, FakeUpstream], container: Container,
                 settings: Settings, ids: Identities) -> None:
        self.base_url = base_url
        self.ids = ids
        self.keys = ids.keys
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
def running(session_settings: Settings, upstreams: dict[str, FakeUpstream]) -> Iterator[Running]:
    s = msgspec.structs.replace(session_settings, inference_breaker_failures=2, inference_breaker_cooldown_seconds=1.0,
                                local_model_max_tokens=16)
    specs = catalog_specs(upstreams["a"], upstreams["b"], upstreams["c"], upstreams["d"])
    ids = with_thread(make_identities, s)
    with_thread(_seed, s, specs, ids.restricted_org_id)
    container = Container(s, role="streamer")
    app = RequestContext(streamer.create_app(container), role="streamer")
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", lifespan="on", log_config=None,
                            access_log=False)
    # Imports uvicorn's protocol modules here, not on the server's thread: two threads importing the same
    # package at once can fail one of them (KeyError: 'uvicorn.protocols').
    config.load()
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="streamer")
    thread.start()
    wait_http(f"http://127.0.0.1:{port}/health")
    yield Running(f"http://127.0.0.1:{port}/v1", upstreams, container, s, ids)
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


def eventually(check: Any, *, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
