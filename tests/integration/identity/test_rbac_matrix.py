"""Every role x every management action, through real HTTP against PostgreSQL and Redis.

Allowed -> 2xx. A role without the permission -> 403. Someone outside the org -> 404 (the org's ids are
not even confirmed). A member reaching for another member's key -> 404. Platform routes -> 403 for all
but platform admins. API keys (all scopes) get exactly their owner's role.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.security import OrgRole, Permission, permissions_of

from .conftest import PASSWORD, Actor, World, bearer, new_user

P = Permission
ACTORS = ["owner", "admin", "member", "viewer", "outsider", "platform_admin"]


@dataclass
class Ctx:
    client: AsyncTestClient[Any]
    container: Container
    world: World
    role: str
    actor: Actor
    headers: dict[str, str]

    @property
    def org(self) -> str:
        return self.world.a.org_id

    @property
    def owner(self) -> Actor:
        return self.world.a.actors["owner"]

    async def fresh_member(self) -> str:
        email, uid = await new_user(self.container)
        r = await self.client.post(f"/v1/orgs/{self.org}/members", json={"email": email},
                                   headers=bearer(self.owner.token))
        assert r.status_code == 201
        return uid

    async def own_key(self) -> str:
        """A key the actor owns when it may have one, else the owner's (so the guard decides)."""
        r = await self.client.post(f"/v1/orgs/{self.org}/keys", json={"name": "mine"}, headers=self.headers)
        if r.status_code == 201:
            return str(r.json()["api_key"]["id"])
        return str(self.owner.key_id)


Call = Callable[[Ctx], Awaitable[Any]]


async def _org_delete(c: Ctx) -> Any:
    owner = c.owner
    r = await c.client.post("/v1/orgs", json={"name": "doomed"}, headers=bearer(owner.token))
    fresh = r.json()["id"]
    if c.role in ("admin", "member", "viewer"):
        r = await c.client.post(f"/v1/orgs/{fresh}/members", json={"email": c.actor.email, "role": c.role},
                                headers=bearer(owner.token))
        assert r.status_code == 201, r.text
    return await c.client.delete(f"/v1/orgs/{fresh}", headers=c.headers)


async def _member_remove(c: Ctx) -> Any:
    return await c.client.delete(f"/v1/orgs/{c.org}/members/{await c.fresh_member()}", headers=c.headers)


async def _member_add(c: Ctx) -> Any:
    email, _ = await new_user(c.container)
    return await c.client.post(f"/v1/orgs/{c.org}/members", json={"email": email, "role": "member"},
                               headers=c.headers)


async def _others_key(c: Ctx) -> Any:
    target = c.world.a.actors["member" if c.role != "member" else "admin"].key_id
    return await c.client.get(f"/v1/orgs/{c.org}/keys/{target}", headers=c.headers)


ACTIONS: dict[str, tuple[Permission, Call]] = {
    "org.read": (P.ORG_READ, lambda c: c.client.get(f"/v1/orgs/{c.org}", headers=c.headers)),
    "org.rename": (P.ORG_MANAGE, lambda c: c.client.patch(f"/v1/orgs/{c.org}", json={"name": "renamed"},
                                                          headers=c.headers)),
    "org.delete": (P.ORG_MANAGE, _org_delete),
    "members.list": (P.ORG_READ, lambda c: c.client.get(f"/v1/orgs/{c.org}/members", headers=c.headers)),
    "members.add": (P.MEMBERS_MANAGE, _member_add),
    "members.change_role": (P.MEMBERS_MANAGE, lambda c: c.client.patch(
        f"/v1/orgs/{c.org}/members/{c.world.a.actors['viewer'].user_id}", json={"role": "viewer"},
        headers=c.headers)),
    "members.remove": (P.MEMBERS_MANAGE, _member_remove),
    "keys.list": (P.KEYS_MANAGE_OWN, lambda c: c.client.get(f"/v1/orgs/{c.org}/keys", headers=c.headers)),
    "keys.create": (P.KEYS_MANAGE_OWN, lambda c: c.client.post(f"/v1/orgs/{c.org}/keys", json={"name": "n"},
                                                               headers=c.headers)),
    "keys.get_own": (P.KEYS_MANAGE_OWN, lambda c: _then(c, c.own_key(), "get")),
    "keys.revoke_own": (P.KEYS_MANAGE_OWN, lambda c: _then(c, c.own_key(), "delete")),
    "keys.rotate_own": (P.KEYS_MANAGE_OWN, lambda c: _then(c, c.own_key(), "rotate")),
    "keys.read_others": (P.KEYS_MANAGE_OWN, _others_key),
    "service_accounts.create": (P.MEMBERS_MANAGE, lambda c: c.client.post(
        f"/v1/orgs/{c.org}/service-accounts", json={"name": "ci"}, headers=c.headers)),
    "service_accounts.list": (P.ORG_READ, lambda c: c.client.get(f"/v1/orgs/{c.org}/service-accounts",
                                                                 headers=c.headers)),
    "audit.read": (P.AUDIT_READ, lambda c: c.client.get(f"/v1/orgs/{c.org}/audit", headers=c.headers)),
    "admin.users.list": (P.PLATFORM_ADMIN, lambda c: c.client.get("/v1/admin/users", headers=c.headers)),
    "admin.users.create": (P.PLATFORM_ADMIN, lambda c: c.client.post(
        "/v1/admin/users", json={"email": f"n-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        headers=c.headers)),
    "admin.orgs.list": (P.PLATFORM_ADMIN, lambda c: c.client.get("/v1/admin/orgs", headers=c.headers)),
    "admin.audit": (P.PLATFORM_ADMIN, lambda c: c.client.get("/v1/admin/audit", headers=c.headers)),
}


async def _then(c: Ctx, key_id_aw: Awaitable[str], what: str) -> Any:
    key_id = await key_id_aw
    url = f"/v1/orgs/{c.org}/keys/{key_id}"
    if what == "get":
        return await c.client.get(url, headers=c.headers)
    if what == "delete":
        return await c.client.delete(url, headers=c.headers)
    return await c.client.post(url + "/rotate", json={"grace_seconds": 60}, headers=c.headers)


def expected(action: str, role: str, *, api_key: bool = False) -> int | tuple[int, ...]:
    """The status class the spec gives ``role`` for ``action``: 2 (2xx), 403 or 404."""
    permission, _ = ACTIONS[action]
    if permission is P.PLATFORM_ADMIN:
        return 2 if role == "platform_admin" and not api_key else 403
    if role == "outsider":
        return 404
    if role == "platform_admin":
        return 2
    perms = permissions_of(OrgRole(role))
    if permission not in perms:
        return 403
    if action == "keys.read_others" and P.KEYS_MANAGE_ALL not in perms:
        return 404
    return 2


def _actor(world: World, role: str) -> Actor:
    if role == "outsider":
        return world.outsider
    if role == "platform_admin":
        return world.admin
    return world.a.actors[role]


def _check(r: Any, want: int | tuple[int, ...], label: str) -> None:
    if want == 2:
        assert 200 <= r.status_code < 300, f"{label}: expected 2xx, got {r.status_code} {r.text}"
    else:
        assert r.status_code == want, f"{label}: expected {want}, got {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/problem+json")


class TestSessionMatrix:
    @pytest.mark.parametrize("role", ACTORS)
    @pytest.mark.parametrize("action", list(ACTIONS))
    async def test_role_action(self, world: World, container: Container, module_api: AsyncTestClient[Any],
                               action: str, role: str) -> None:
        actor = _actor(world, role)
        ctx = Ctx(module_api, container, world, role, actor, bearer(actor.token))
        r = await ACTIONS[action][1](ctx)
        _check(r, expected(action, role), f"{role} {action}")


KEY_ACTIONS = [a for a in ACTIONS if a != "org.delete"]


class TestApiKeyMatrix:
    @pytest.mark.parametrize("role", ["owner", "admin", "member"])
    @pytest.mark.parametrize("action", KEY_ACTIONS)
    async def test_key_gets_its_owners_role(self, world: World, container: Container,
                                            module_api: AsyncTestClient[Any], action: str, role: str) -> None:
        actor = world.a.actors[role]
        assert actor.key
        ctx = Ctx(module_api, container, world, role, actor, bearer(actor.key))
        r = await ACTIONS[action][1](ctx)
        _check(r, expected(action, role, api_key=True), f"{role}-key {action}")

    async def test_read_only_key_cannot_write(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "ro", "scopes": ["management:read"]})
        ro = bearer(r.json()["key"])
        assert (await module_api.get(f"/v1/orgs/{world.a.org_id}/members", headers=ro)).status_code == 200
        r = await module_api.patch(f"/v1/orgs/{world.a.org_id}", json={"name": "x"}, headers=ro)
        assert r.status_code == 403

    async def test_inference_only_key_cannot_manage(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "inf"})
        inf = bearer(r.json()["key"])
        assert (await module_api.get(f"/v1/orgs/{world.a.org_id}", headers=inf)).status_code == 403

    async def test_key_cannot_mint_wider_scopes(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "w", "scopes": ["management:write"]})
        w = bearer(r.json()["key"])
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=w,
                                  json={"name": "x", "scopes": ["inference"]})
        assert r.status_code == 403


class TestOwnerRules:
    async def test_admin_cannot_touch_owners(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        org, admin = world.b.org_id, world.b.actors["admin"]
        owner = world.b.actors["owner"]
        r = await module_api.patch(f"/v1/orgs/{org}/members/{owner.user_id}", json={"role": "member"},
                                   headers=bearer(admin.token))
        assert r.status_code == 403
        r = await module_api.patch(f"/v1/orgs/{org}/members/{world.b.actors['member'].user_id}",
                                   json={"role": "owner"}, headers=bearer(admin.token))
        assert r.status_code == 403

    async def test_last_owner_stays(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        org, owner = world.b.org_id, world.b.actors["owner"]
        r = await module_api.patch(f"/v1/orgs/{org}/members/{owner.user_id}", json={"role": "admin"},
                                   headers=bearer(owner.token))
        assert r.status_code == 409
        r = await module_api.delete(f"/v1/orgs/{org}/members/{owner.user_id}", headers=bearer(owner.token))
        assert r.status_code == 409
        assert (await module_api.get(f"/v1/orgs/{org}", headers=bearer(owner.token))).json()["role"] == "owner"
