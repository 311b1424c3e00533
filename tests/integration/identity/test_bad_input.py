"""Bad input gets a clear problem+json 4xx, never a 500: tokens, names, roles, emails, ids, cursors, bodies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from .conftest import World, bearer


def _problem_4xx(r: Any) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc["status"] == r.status_code and doc["detail"]
    return doc


class TestBadBodies:
    @pytest.mark.parametrize("body", [
        {"name": ""}, {"name": "x" * 201}, {"name": "x" * 100_000}, {"name": 5}, {}, {"name": None},
        {"name": "ok", "extra": 1}, [], "just a string",
    ])
    async def test_org_names(self, world: World, module_api: AsyncTestClient[Any], body: Any) -> None:
        owner = world.a.actors["owner"]
        _problem_4xx(await module_api.patch(f"/v1/orgs/{world.a.org_id}", json=body, headers=bearer(owner.token)))

    @pytest.mark.parametrize("role", ["emperor", "OWNER", "", None, 3, "platform_admin"])
    async def test_unknown_roles(self, world: World, module_api: AsyncTestClient[Any], role: Any) -> None:
        owner = world.a.actors["owner"]
        uid = world.a.actors["viewer"].user_id
        _problem_4xx(await module_api.patch(f"/v1/orgs/{world.a.org_id}/members/{uid}", json={"role": role},
                                            headers=bearer(owner.token)))
        _problem_4xx(await module_api.post(f"/v1/orgs/{world.a.org_id}/members",
                                           json={"email": "a@b.co", "role": role}, headers=bearer(owner.token)))

    @pytest.mark.parametrize("email", ["", "plain", "a@b", "x" * 400 + "@b.co", "a b@c.d", "a@b.co\n"])
    async def test_bad_emails(self, world: World, module_api: AsyncTestClient[Any], email: str) -> None:
        _problem_4xx(await module_api.post("/v1/admin/users", json={"email": email, "password": "x" * 20},
                                           headers=bearer(world.admin.token)))
        _problem_4xx(await module_api.post("/v1/auth/login", json={"email": email, "password": "x" * 20}))

    @pytest.mark.parametrize("password", ["short", "x" * 73, "é" * 40])
    async def test_bad_passwords(self, world: World, module_api: AsyncTestClient[Any], password: str) -> None:
        doc = _problem_4xx(await module_api.post("/v1/admin/users", json={"email": "pw@example.com",
                                                 "password": password}, headers=bearer(world.admin.token)))
        assert password not in str(doc)

    @pytest.mark.parametrize("body", [
        {"name": "k", "scopes": ["root"]}, {"name": "k", "rpm_limit": -1}, {"name": "k", "tpm_limit": "many"},
        {"name": "k", "allowed_models": ["x" * 300]}, {"name": "k", "expires_at": "yesterday"},
        {"name": "k", "expires_at": "2000-01-01T00:00:00Z"}, {"name": "k", "service_account_id": "nope"},
        {"name": "k", "service_account_id": "00000000-0000-0000-0000-000000000000"},
    ])
    async def test_bad_keys(self, world: World, module_api: AsyncTestClient[Any], body: Any) -> None:
        owner = world.a.actors["owner"]
        _problem_4xx(await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json=body,
                                           headers=bearer(owner.token)))

    async def test_invalid_json(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        _problem_4xx(await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", content=b'{"name": ',
                                           headers={**bearer(owner.token), "content-type": "application/json"}))


class TestBadIdsAndQueries:
    @pytest.mark.parametrize("org_id", ["nope", "1", "00000000-0000-0000-0000-000000000000", "'; drop table x;--",
                                        "%00", "a" * 300])
    async def test_org_ids(self, world: World, module_api: AsyncTestClient[Any], org_id: str) -> None:
        doc = _problem_4xx(await module_api.get(f"/v1/orgs/{org_id}/members",
                                                headers=bearer(world.admin.token)))
        assert doc["status"] == 404

    @pytest.mark.parametrize("key_id", ["nope", "00000000-0000-0000-0000-000000000000"])
    async def test_key_ids(self, world: World, module_api: AsyncTestClient[Any], key_id: str) -> None:
        owner = world.a.actors["owner"]
        doc = _problem_4xx(await module_api.delete(f"/v1/orgs/{world.a.org_id}/keys/{key_id}",
                                                   headers=bearer(owner.token)))
        assert doc["status"] == 404

    @pytest.mark.parametrize("query", ["cursor=garbage!", "limit=0", "limit=1000", "limit=x", "include_revoked=maybe"])
    async def test_queries(self, world: World, module_api: AsyncTestClient[Any], query: str) -> None:
        owner = world.a.actors["owner"]
        _problem_4xx(await module_api.get(f"/v1/orgs/{world.a.org_id}/keys?{query}", headers=bearer(owner.token)))

    @pytest.mark.parametrize("key", ["", "x" * 300])
    async def test_bad_idempotency_keys(self, world: World, module_api: AsyncTestClient[Any], key: str) -> None:
        owner = world.a.actors["owner"]
        _problem_4xx(await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "k"},
                                           headers={**bearer(owner.token), "Idempotency-Key": key}))


class TestGeneratedInput:
    @settings(max_examples=40)
    @given(header=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
           | st.just("Bearer sk-").flatmap(lambda p: st.text(alphabet="Aa0_-!", max_size=50).map(lambda t: p + t)))
    async def test_any_authorization_header_is_401_not_500(self, module_api: AsyncTestClient[Any],
                                                            header: str) -> None:
        r = await module_api.get("/v1/users/me", headers={"Authorization": header})
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")

    @settings(max_examples=40)
    @given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=50),
                             lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                                 st.sampled_from(["name", "scopes", "rpm_limit", "allowed_models", "expires_at",
                                                  "service_account_id", "x"]), inner, max_size=5), max_leaves=10))
    async def test_any_key_body_is_never_a_500(self, world: World, module_api: AsyncTestClient[Any],
                                               body: Any) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json=body, headers=bearer(owner.token))
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            _problem_4xx(r)
