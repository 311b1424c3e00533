"""A small world for identity tests: users of every role in two orgs, with sessions and keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from aiaas.auth import api as auth_api
from aiaas.entrypoints import api, streamer
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal
from identity_support import Actor, Tenant
from support import FIXTURE_BCRYPT_ROUNDS

PASSWORD = "correct horse battery staple"  # pragma: allowlist secret
ROLES = ("owner", "admin", "member", "viewer")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    a: Tenant
    b: Tenant
    admin: Actor  # platform admin
    outsider: Actor  # member of no org


async def new_user(container: Container, *, platform_admin: bool = False, prefix: str = "u") -> tuple[str, str]:
    email = f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
    async with container.db.unit_of_work("auth") as s:
        u = await auth_api.create_user(s, email=email, password=PASSWORD, platform_admin=platform_admin,
                                       rounds=FIXTURE_BCRYPT_ROUNDS, actor=None)
    return email, u.id


async def login(client: AsyncTestClient[Any], email: str, password: str = PASSWORD) -> str:
    r = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


async def make_actor(container: Container, client: AsyncTestClient[Any], **kw: Any) -> Actor:
    email, uid = await new_user(container, **kw)
    return Actor(email=email, user_id=uid, token=await login(client, email))


async def make_tenant(container: Container, client: AsyncTestClient[Any]) -> Tenant:
    owner = await make_actor(container, client)
    r = await client.post("/v1/orgs", json={"name": f"org-{uuid.uuid4().hex[:6]}"}, headers=bearer(owner.token))
    assert r.status_code == 201, r.text
    tenant = Tenant(org_id=r.json()["id"], actors={"owner": owner})
    for role in ROLES[1:]:
        actor = await make_actor(container, client)
        r = await client.post(f"/v1/orgs/{tenant.org_id}/members", json={"email": actor.email, "role": role},
                              headers=bearer(owner.token))
        assert r.status_code == 201, r.text
        tenant.actors[role] = actor
    for actor in tenant.actors.values():
        r = await client.post(f"/v1/orgs/{tenant.org_id}/keys", headers=bearer(actor.token),
                              json={"name": "k", "scopes": ["inference", "management:read", "management:write"]})
        if r.status_code == 201:
            actor.key, actor.key_id = r.json()["key"], r.json()["api_key"]["id"]
    return tenant


async def app_client(role: str, settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    factory = {"api": api.create_app, "streamer": streamer.create_app}[role]
    app = RequestContext(factory(Container(settings, role=role)), role=role)
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def identity_settings(session_settings: Settings) -> Settings:
    """Every test logs in from the same test-client address: lift the per-address throttle (tested apart)."""
    return msgspec.structs.replace(session_settings, login_max_attempts_per_address=1_000_000)


@pytest.fixture(scope="module")
async def module_api(identity_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async for c in app_client("api", identity_settings):
        yield c


@pytest.fixture(scope="module")
async def container(identity_settings: Settings) -> AsyncIterator[Container]:
    c = Container(identity_settings, role="api")
    yield c
    await c.redis.aclose()
    await c.db.dispose()


@pytest.fixture(scope="module")
async def world(container: Container, module_api: AsyncTestClient[Any]) -> World:
    admin = await make_actor(container, module_api, platform_admin=True)
    outsider = await make_actor(container, module_api)
    return World(a=await make_tenant(container, module_api), b=await make_tenant(container, module_api),
                 admin=admin, outsider=outsider)


def owner_principal(user_id: str, org_id: str) -> Principal:
    return Principal(kind="session", user_id=user_id, org_id=org_id, org_role=OrgRole.OWNER)
