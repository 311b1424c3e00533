"""Bad input gets the exact problem+json answer it deserves, never a 500: tokens, names, roles, emails, ids,
cursors, bodies.

Each case names the status, the problem ``type`` (``https://aiaas.dev/problems/<slug>``), the ``code`` (None where
the platform sets none) and, for validation errors, the field the ``errors`` list blames.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from .conftest import World, bearer

PROBLEMS = "https://aiaas.dev/problems/"


def _problem(r: Any, status: int, slug: str, *, code: str | None = None, field: str | None = None) -> dict[str, Any]:
    """``r`` is exactly this problem: status, ``type``, ``code``, and (422) the field named in ``errors``."""
    assert r.status_code == status, f"expected {status}, got {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    doc = r.json()
    assert doc["status"] == status, doc
    assert doc["type"] == PROBLEMS + slug, doc
    assert doc.get("code") == code, doc
    assert doc["detail"], doc
    if field is not None:
        assert field in {e.get("key") for e in doc.get("errors") or []}, doc
    return doc


def _invalid(r: Any, field: str) -> dict[str, Any]:
    return _problem(r, 422, "validation-error", field=field)


class TestBadBodies:
    @pytest.mark.parametrize(("body", "field"), [
        ({"name": ""}, "name"), ({"name": "x" * 201}, "name"), ({"name": "x" * 100_000}, "name"),
        ({"name": 5}, "name"), ({}, "data"), ({"name": None}, "name"), ({"name": "ok", "extra": 1}, "data"),
        ([], "data"), ("just a string", "data"),
    ])
    async def test_org_names(self, world: World, module_api: AsyncTestClient[Any], body: Any, field: str) -> None:
        owner = world.a.actors["owner"]
        _invalid(await module_api.patch(f"/v1/orgs/{world.a.org_id}", json=body, headers=bearer(owner.token)), field)

    @pytest.mark.parametrize("role", ["emperor", "OWNER", "", None, 3, "platform_admin"])
    async def test_unknown_roles(self, world: World, module_api: AsyncTestClient[Any], role: Any) -> None:
        owner = world.a.actors["owner"]
        uid = world.a.actors["viewer"].user_id
        _invalid(await module_api.patch(f"/v1/orgs/{world.a.org_id}/members/{uid}", json={"role": role},
                                        headers=bearer(owner.token)), "role")
        _invalid(await module_api.post(f"/v1/orgs/{world.a.org_id}/members", json={"email": "a@b.co", "role": role},
                                       headers=bearer(owner.token)), "role")

    # Creating a user validates the address; logging in only bounds it (length, no control characters) and
    # answers any other unknown address like a wrong password.
    @pytest.mark.parametrize(("email", "login_status"), [
        ("", 422), ("plain", 401), ("a@b", 401), ("x" * 400 + "@b.co", 422), ("a b@c.d", 401), ("a@b.co\n", 422),
    ])
    async def test_bad_emails(self, world: World, module_api: AsyncTestClient[Any], email: str,
                              login_status: int) -> None:
        _invalid(await module_api.post("/v1/admin/users", json={"email": email, "password": "x" * 20},
                                       headers=bearer(world.admin.token)), "email")
        r = await module_api.post("/v1/auth/login", json={"email": email, "password": "x" * 20})
        if login_status == 422:
            _invalid(r, "email")
        else:
            _problem(r, 401, "unauthenticated", code="invalid_credentials")

    @pytest.mark.parametrize("password", ["short", "x" * 73, "é" * 40])
    async def test_bad_passwords(self, world: World, module_api: AsyncTestClient[Any], password: str) -> None:
        doc = _invalid(await module_api.post("/v1/admin/users", json={"email": "pw@example.com", "password": password},
                                             headers=bearer(world.admin.token)), "password")
        assert password not in str(doc)

    @pytest.mark.parametrize(("body", "status", "slug", "code", "field"), [
        ({"name": "k", "scopes": ["root"]}, 422, "validation-error", None, "scopes[0]"),
        ({"name": "k", "rpm_limit": -1}, 422, "validation-error", None, "rpm_limit"),
        ({"name": "k", "tpm_limit": "many"}, 422, "validation-error", None, "tpm_limit"),
        ({"name": "k", "allowed_models": ["x" * 300]}, 422, "validation-error", None, "allowed_models[0]"),
        ({"name": "k", "expires_at": "yesterday"}, 422, "validation-error", None, "expires_at"),
        ({"name": "k", "expires_at": "2000-01-01T00:00:00Z"}, 422, "validation-error", None, "expires_at"),
        ({"name": "k", "service_account_id": "nope"}, 404, "not-found", "service_account_not_found", None),
        ({"name": "k", "service_account_id": "00000000-0000-0000-0000-000000000000"}, 404, "not-found",
         "service_account_not_found", None),
    ])
    async def test_bad_keys(self, world: World, module_api: AsyncTestClient[Any], body: Any, status: int, slug: str,
                            code: str | None, field: str | None) -> None:
        owner = world.a.actors["owner"]
        _problem(await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json=body, headers=bearer(owner.token)),
                 status, slug, code=code, field=field)

    async def test_invalid_json(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        _problem(await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", content=b'{"name": ',
                                       headers={**bearer(owner.token), "content-type": "application/json"}),
                 400, "bad-request")


class TestBadIdsAndQueries:
    @pytest.mark.parametrize("org_id", ["nope", "1", "00000000-0000-0000-0000-000000000000", "'; drop table x;--",
                                        "%00", "a" * 300])
    async def test_org_ids(self, world: World, module_api: AsyncTestClient[Any], org_id: str) -> None:
        _problem(await module_api.get(f"/v1/orgs/{org_id}/members", headers=bearer(world.admin.token)),
                 404, "not-found", code="org_not_found")

    @pytest.mark.parametrize("key_id", ["nope", "00000000-0000-0000-0000-000000000000"])
    async def test_key_ids(self, world: World, module_api: AsyncTestClient[Any], key_id: str) -> None:
        owner = world.a.actors["owner"]
        _problem(await module_api.delete(f"/v1/orgs/{world.a.org_id}/keys/{key_id}", headers=bearer(owner.token)),
                 404, "not-found", code="key_not_found")

    @pytest.mark.parametrize(("query", "field"), [
        ("cursor=garbage!", "cursor"), ("limit=0", "limit"), ("limit=1000", "limit"), ("limit=x", "limit"),
        ("include_revoked=maybe", "include_revoked"),
    ])
    async def test_queries(self, world: World, module_api: AsyncTestClient[Any], query: str, field: str) -> None:
        owner = world.a.actors["owner"]
        _invalid(await module_api.get(f"/v1/orgs/{world.a.org_id}/keys?{query}", headers=bearer(owner.token)), field)

    @pytest.mark.parametrize("key", ["", "x" * 300])
    async def test_bad_idempotency_keys(self, world: World, module_api: AsyncTestClient[Any], key: str) -> None:
        owner = world.a.actors["owner"]
        _invalid(await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "k"},
                                       headers={**bearer(owner.token), "Idempotency-Key": key}), "Idempotency-Key")


# What a generated key body may get, by status: (problem type slug, the codes the platform may set).
KEY_BODY_ANSWERS: dict[int, tuple[str, frozenset[str | None]]] = {
    404: ("not-found", frozenset({"service_account_not_found"})),  # a `service_account_id` of no service account
    422: ("validation-error", frozenset({None, "invalid_characters"})),  # a NUL character has its own code
}


class TestGeneratedInput:
    @settings(max_examples=40)
    @given(header=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
           | st.just("Bearer sk-").flatmap(lambda p: st.text(alphabet="Aa0_-!", max_size=50).map(lambda t: p + t)))
    async def test_any_authorization_header_is_401_not_500(self, module_api: AsyncTestClient[Any],
                                                            header: str) -> None:
        r = await module_api.get("/v1/users/me", headers={"Authorization": header})
        _problem(r, 401, "unauthenticated", code="invalid_api_key")
        assert r.headers["www-authenticate"].startswith("Bearer"), r.headers

    @settings(max_examples=40)
    @given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=50),
                             lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                                 st.sampled_from(["name", "scopes", "rpm_limit", "allowed_models", "expires_at",
                                                  "service_account_id", "x"]), inner, max_size=5), max_leaves=10))
    async def test_any_key_body_is_never_a_500(self, world: World, module_api: AsyncTestClient[Any],
                                               body: Any) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json=body, headers=bearer(owner.token))
        assert r.status_code in {201, *KEY_BODY_ANSWERS}, f"{body!r}: {r.status_code} {r.text}"
        if r.status_code == 201:
            assert r.headers["content-type"].startswith("application/json"), r.headers
            assert r.json()["key"].startswith("sk-") and r.json()["api_key"]["org_id"] == world.a.org_id
            return
        slug, codes = KEY_BODY_ANSWERS[r.status_code]
        assert r.headers["content-type"].startswith("application/problem+json"), r.headers
        doc = r.json()
        assert doc["status"] == r.status_code and doc["type"] == PROBLEMS + slug, doc
        assert doc.get("code") in codes and doc["detail"], doc
