"""A member (or key) of org A can read, change or delete nothing of org B by guessing ids: always 404."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aiaas.kernel.security import ROLE_PERMISSIONS, OrgRole, Permission

from .conftest import World, bearer


def _b_targets(world: World) -> list[tuple[str, str, dict[str, Any] | None]]:
    b = world.b
    key_id = b.actors["member"].key_id
    uid = b.actors["member"].user_id
    return [
        ("GET", f"/v1/orgs/{b.org_id}", None),
        ("PATCH", f"/v1/orgs/{b.org_id}", {"name": "pwned"}),
        ("DELETE", f"/v1/orgs/{b.org_id}", None),
        ("GET", f"/v1/orgs/{b.org_id}/members", None),
        ("POST", f"/v1/orgs/{b.org_id}/members", {"email": "x@example.com"}),
        ("PATCH", f"/v1/orgs/{b.org_id}/members/{uid}", {"role": "viewer"}),
        ("DELETE", f"/v1/orgs/{b.org_id}/members/{uid}", None),
        ("GET", f"/v1/orgs/{b.org_id}/keys", None),
        ("POST", f"/v1/orgs/{b.org_id}/keys", {"name": "x"}),
        ("GET", f"/v1/orgs/{b.org_id}/keys/{key_id}", None),
        ("DELETE", f"/v1/orgs/{b.org_id}/keys/{key_id}", None),
        ("POST", f"/v1/orgs/{b.org_id}/keys/{key_id}/rotate", {"grace_seconds": 0}),
        ("GET", f"/v1/orgs/{b.org_id}/service-accounts", None),
        ("POST", f"/v1/orgs/{b.org_id}/service-accounts", {"name": "x"}),
        ("GET", f"/v1/orgs/{b.org_id}/audit", None),
    ]


def _b_ids_under_a(world: World) -> list[tuple[str, str, dict[str, Any] | None, Permission]]:
    """B's ids under A's own org path: 404 for whoever may act there (403 for who may not act at all)."""
    key_id = world.b.actors["member"].key_id
    uid = world.b.actors["member"].user_id
    a = world.a.org_id
    return [
        ("GET", f"/v1/orgs/{a}/keys/{key_id}", None, Permission.KEYS_MANAGE_OWN),
        ("DELETE", f"/v1/orgs/{a}/keys/{key_id}", None, Permission.KEYS_MANAGE_OWN),
        ("POST", f"/v1/orgs/{a}/keys/{key_id}/rotate", {"grace_seconds": 0}, Permission.KEYS_MANAGE_OWN),
        ("PATCH", f"/v1/orgs/{a}/members/{uid}", {"role": "viewer"}, Permission.MEMBERS_MANAGE),
        ("DELETE", f"/v1/orgs/{a}/members/{uid}", None, Permission.MEMBERS_MANAGE),
        ("DELETE", f"/v1/orgs/{a}/service-accounts/{uid}", None, Permission.MEMBERS_MANAGE),
    ]


class TestCrossTenant:
    @pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
    @pytest.mark.parametrize("credential", ["session", "api_key"])
    async def test_org_a_cannot_reach_org_b(self, world: World, module_api: AsyncTestClient[Any], role: str,
                                            credential: str) -> None:
        actor = world.a.actors[role]
        token = actor.token if credential == "session" else actor.key
        if token is None:
            pytest.skip("viewers hold no keys")
        for method, path, body in _b_targets(world):
            r = await module_api.request(method, path, json=body, headers=bearer(token))
            assert r.status_code == 404, f"{role}/{credential} {method} {path}: {r.status_code} {r.text}"
            assert r.headers["content-type"].startswith("application/problem+json")
        for method, path, body, permission in _b_ids_under_a(world):
            r = await module_api.request(method, path, json=body, headers=bearer(token))
            want = 404 if permission in ROLE_PERMISSIONS[OrgRole(role)] else 403
            assert r.status_code == want, f"{role}/{credential} {method} {path}: {r.status_code} {r.text}"
        # and B is untouched
        owner_b = world.b.actors["owner"]
        org = (await module_api.get(f"/v1/orgs/{world.b.org_id}", headers=bearer(owner_b.token))).json()
        assert org["name"] != "pwned"
        r = await module_api.get(f"/v1/orgs/{world.b.org_id}/keys/{world.b.actors['member'].key_id}",
                                 headers=bearer(owner_b.token))
        assert r.json()["status"] == "active"

    async def test_lists_show_only_own_orgs(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        member = world.a.actors["member"]
        ids = {o["id"] for o in (await module_api.get("/v1/orgs", headers=bearer(member.token))).json()["data"]}
        assert world.a.org_id in ids and world.b.org_id not in ids
        ids = {o["id"] for o in (await module_api.get("/v1/orgs", headers=bearer(member.key or ""))).json()["data"]}
        assert ids == {world.a.org_id}

    async def test_audit_of_a_has_nothing_of_b(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        data = (await module_api.get(f"/v1/orgs/{world.a.org_id}/audit?limit=100",
                                     headers=bearer(owner.token))).json()["data"]
        assert data and all(e["org_id"] == world.a.org_id for e in data)

    async def test_deleted_org_is_gone_for_everyone(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post("/v1/orgs", json={"name": "short-lived"}, headers=bearer(owner.token))
        org = r.json()["id"]
        key = (await module_api.post(f"/v1/orgs/{org}/keys", json={"name": "k",
                                     "scopes": ["management:read"]}, headers=bearer(owner.token))).json()["key"]
        assert (await module_api.delete(f"/v1/orgs/{org}", headers=bearer(owner.token))).status_code == 204
        assert (await module_api.get(f"/v1/orgs/{org}", headers=bearer(owner.token))).status_code == 404
        assert (await module_api.get(f"/v1/orgs/{org}", headers=bearer(world.admin.token))).status_code == 404
        assert (await module_api.get(f"/v1/orgs/{org}", headers=bearer(key))).status_code == 401
