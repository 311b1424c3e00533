"""Revocations and role changes bite on every replica once the API said 2xx, even when Redis fails.

Writes that take power away reach the principal cache *before* the database commits (write-ahead): when
Redis cannot take them the API answers 503 and nothing changes; once it answers 2xx, no replica accepts
the old key or role again. The Redis here is a redis-server of the test's own, stopped and started again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from aiaas.auth import service as auth_service
from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal
from aiaas.orgs import api as orgs_api
from identity_support import Org, bearer, org_with_keys
from support import OwnRedis


async def _up(redis: OwnRedis) -> None:
    client = Redis.from_url(redis.url)
    try:
        for _ in range(300):
            try:
                await client.ping()
                return
            except Exception:  # not listening yet
                await asyncio.sleep(0.05)
        raise TimeoutError("the test's redis-server did not come up")
    finally:
        await client.aclose()


@pytest.fixture
async def world(settings: Settings, own_redis: OwnRedis) -> AsyncIterator[tuple[Container, AsyncTestClient[Any], Org]]:
    """An api app on the test's Redis, and a container of the test's own (a second replica) on the same."""
    await _up(own_redis)
    s = msgspec.structs.replace(settings, redis_url=own_redis.url)
    replica = Container(s, role="streamer")
    try:
        org = await org_with_keys(replica, members={"member": OrgRole.MEMBER})
        app = RequestContext(api.create_app(Container(s, role="api")), role="api")
        async with AsyncTestClient(app=app, raise_server_exceptions=False) as client:
            yield replica, client, org
    finally:
        await replica.stop()


async def _key_status(container: Container, org: Org, key_id: str) -> str:
    owner = Principal(kind="session", user_id=org.owner_id, org_id=org.id, org_role=OrgRole.OWNER)
    async with container.db.unit_of_work("auth") as s:
        return (await auth_service.get_key(s, org_id=org.id, key_id=key_id, actor=owner)).status


class TestRevocationWhenRedisFails:
    async def test_refused_with_503_and_nothing_changes_then_bites_everywhere(
        self, world: tuple[Container, AsyncTestClient[Any], Org], own_redis: OwnRedis,
    ) -> None:
        container, client, org = world
        owner, member = org.keys["owner"], org.keys["member"]
        resolver = container.authenticator
        assert await resolver.authenticate(member.secret) is not None  # cached, warm
        own_redis.stop()
        r = await client.delete(f"/v1/orgs/{org.id}/keys/{member.id}", headers=bearer(owner.secret))
        assert r.status_code == 503 and r.json()["code"] == "cache_unavailable", r.text
        assert await _key_status(container, org, member.id) == "active"  # rolled back: nothing changed
        own_redis.start()
        await _up(own_redis)
        assert await resolver.authenticate(member.secret) is not None  # cached again, warm
        r = await client.delete(f"/v1/orgs/{org.id}/keys/{member.id}", headers=bearer(owner.secret))
        assert r.status_code == 200 and r.json()["status"] == "revoked"
        assert await resolver.authenticate(member.secret) is None  # the other replica refuses it at once


class TestRoleChangeWhenRedisFails:
    async def test_refused_with_503_and_the_role_is_unchanged(
        self, world: tuple[Container, AsyncTestClient[Any], Org], own_redis: OwnRedis,
    ) -> None:
        container, client, org = world
        owner, member = org.keys["owner"], org.keys["member"]
        cached = await container.authenticator.authenticate(member.secret)
        assert cached is not None and cached.org_role is OrgRole.MEMBER
        own_redis.stop()
        r = await client.patch(f"/v1/orgs/{org.id}/members/{member.user_id}", json={"role": "admin"},
                               headers=bearer(owner.secret))
        assert r.status_code == 503 and r.json()["code"] == "cache_unavailable", r.text
        async with container.db.unit_of_work("orgs") as s:
            assert await orgs_api.role_of(s, org_id=org.id, user_id=member.user_id) is OrgRole.MEMBER
        own_redis.start()
        await _up(own_redis)
        r = await client.patch(f"/v1/orgs/{org.id}/members/{member.user_id}", json={"role": "admin"},
                               headers=bearer(owner.secret))
        assert r.status_code == 200, r.text
        now = await container.authenticator.authenticate(member.secret)
        assert now is not None and now.org_role is OrgRole.ADMIN  # the next request sees the new role
