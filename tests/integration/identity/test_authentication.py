"""Authentication on both apps: tokens, 401s as problem+json (OpenAI-shaped on the streamer), revocation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import get
from litestar.testing import AsyncTestClient

from aiaas.entrypoints.bootstrap import Container, dependencies
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import Permission, Principal
from aiaas.kernel.web import make_app

from .conftest import World, bearer


@get("/v1/whoami", opt={"permission": Permission.MODELS_INVOKE}, sync_to_thread=False)
def whoami(principal: Principal) -> dict[str, Any]:
    """A stand-in for an inference route: needs models:invoke, echoes the principal."""
    return {"kind": principal.kind, "org_id": principal.org_id, "key_id": principal.key_id,
            "role": principal.org_role, "scopes": sorted(principal.scopes)}


async def _inference_like_app(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """An app built like the streamer (OpenAI errors, the shared authenticator) with one protected route."""
    container = Container(settings, role="streamer")
    app = make_app(role="streamer", settings=settings, route_handlers=[whoami], checks={}, title="t",
                   description="d", openai_errors=True, dependencies=dependencies(container),
                   authenticator=container.authenticator, on_shutdown=[container.stop])
    async with AsyncTestClient(app=RequestContext(app, role="streamer"), raise_server_exceptions=False) as c:
        yield c


# Replicas of the module's api: they share its Redis keys (the principal cache), as replicas do.
@pytest.fixture
async def replica1(identity_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async for c in _inference_like_app(identity_settings):
        yield c


@pytest.fixture
async def replica2(identity_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async for c in _inference_like_app(identity_settings):
        yield c


def _assert_401(r: Any, *, openai: bool) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["www-authenticate"].startswith("Bearer")
    doc = r.json()
    assert doc["status"] == 401
    if openai:
        assert doc["error"]["type"] == "authentication_error"
        assert doc["error"]["code"] == "invalid_api_key"


BAD_HEADERS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Bearer sk-short",
    "Bearer sk-" + "A" * 42 + "!",
    "Bearer ses_" + "x" * 43,
    "Bearer sk-" + "A" * 43,
    "Bearer " + "sk-" + "A" * 600,
    "bearer\tsk-abc",
]


class TestUnauthenticated:
    @pytest.mark.parametrize("header", BAD_HEADERS)
    async def test_streamer_refuses_with_openai_error(self, replica1: AsyncTestClient[Any], header: str | None) -> None:
        headers = {"Authorization": header} if header is not None else {}
        _assert_401(await replica1.get("/v1/whoami", headers=headers), openai=True)

    @pytest.mark.parametrize("header", BAD_HEADERS[:5])
    async def test_api_refuses(self, api_client: AsyncTestClient[Any], header: str | None) -> None:
        headers = {"Authorization": header} if header is not None else {}
        _assert_401(await api_client.get("/v1/users/me", headers=headers), openai=False)

    @pytest.mark.parametrize("path", ["/health", "/metrics", "/openapi/openapi.json"])
    async def test_public_routes_need_no_token(self, api_client: AsyncTestClient[Any], path: str) -> None:
        assert (await api_client.get(path)).status_code == 200

    async def test_streamer_openapi_is_public(self, streamer_client: AsyncTestClient[Any]) -> None:
        assert (await streamer_client.get("/openapi/openapi.json")).status_code == 200


class TestApiKeyOnStreamer:
    async def test_member_key_resolves_to_principal(self, world: World, replica1: AsyncTestClient[Any]) -> None:
        member = world.a.actors["member"]
        r = await replica1.get("/v1/whoami", headers=bearer(member.key or ""))
        assert r.status_code == 200, r.text
        assert r.json() == {"kind": "api_key", "org_id": world.a.org_id, "key_id": member.key_id, "role": "member",
                            "scopes": ["inference", "management:read", "management:write"]}

    async def test_session_cannot_invoke_models(self, world: World, replica1: AsyncTestClient[Any]) -> None:
        r = await replica1.get("/v1/whoami", headers=bearer(world.a.actors["member"].token))
        assert r.status_code == 403
        assert r.json()["error"]["type"] == "permission_error"

    async def test_key_without_inference_scope_is_forbidden(self, world: World, module_api: AsyncTestClient[Any],
                                                            replica1: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "read-only", "scopes": ["management:read"]})
        assert r.status_code == 201, r.text
        assert (await replica1.get("/v1/whoami", headers=bearer(r.json()["key"]))).status_code == 403


class TestRevocation:
    async def test_revoked_key_is_refused_on_every_replica(
        self, world: World, module_api: AsyncTestClient[Any], replica1: AsyncTestClient[Any],
        replica2: AsyncTestClient[Any],
    ) -> None:
        member = world.a.actors["member"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(member.token),
                                  json={"name": "to-revoke"})
        key, key_id = r.json()["key"], r.json()["api_key"]["id"]
        for replica in (replica1, replica2):  # both replicas have the principal cached (warm)
            assert (await replica.get("/v1/whoami", headers=bearer(key))).status_code == 200
        r = await module_api.delete(f"/v1/orgs/{world.a.org_id}/keys/{key_id}", headers=bearer(member.token))
        assert r.status_code == 200 and r.json()["status"] == "revoked"
        for replica in (replica1, replica2):
            _assert_401(await replica.get("/v1/whoami", headers=bearer(key)), openai=True)

    async def test_removed_member_keys_are_refused(
        self, world: World, container: Container, module_api: AsyncTestClient[Any], replica1: AsyncTestClient[Any],
        replica2: AsyncTestClient[Any],
    ) -> None:
        from .conftest import make_actor

        owner = world.b.actors["owner"]
        temp = await make_actor(container, module_api)
        r = await module_api.post(f"/v1/orgs/{world.b.org_id}/members", json={"email": temp.email},
                                  headers=bearer(owner.token))
        assert r.status_code == 201
        r = await module_api.post(f"/v1/orgs/{world.b.org_id}/keys", headers=bearer(temp.token), json={"name": "t"})
        key = r.json()["key"]
        for replica in (replica1, replica2):
            assert (await replica.get("/v1/whoami", headers=bearer(key))).status_code == 200
        r = await module_api.delete(f"/v1/orgs/{world.b.org_id}/members/{temp.user_id}", headers=bearer(owner.token))
        assert r.status_code == 204, r.text
        for replica in (replica1, replica2):
            _assert_401(await replica.get("/v1/whoami", headers=bearer(key)), openai=True)

    async def test_role_change_applies_at_once(
        self, world: World, container: Container, module_api: AsyncTestClient[Any], replica1: AsyncTestClient[Any],
    ) -> None:
        from .conftest import make_actor

        owner = world.b.actors["owner"]
        temp = await make_actor(container, module_api)
        await module_api.post(f"/v1/orgs/{world.b.org_id}/members", json={"email": temp.email},
                              headers=bearer(owner.token))
        key = (await module_api.post(f"/v1/orgs/{world.b.org_id}/keys", headers=bearer(temp.token),
                                     json={"name": "t"})).json()["key"]
        assert (await replica1.get("/v1/whoami", headers=bearer(key))).status_code == 200
        r = await module_api.patch(f"/v1/orgs/{world.b.org_id}/members/{temp.user_id}", json={"role": "viewer"},
                                   headers=bearer(owner.token))
        assert r.status_code == 200, r.text
        assert (await replica1.get("/v1/whoami", headers=bearer(key))).status_code == 403

    async def test_logout_ends_the_session(self, world: World, container: Container,
                                           module_api: AsyncTestClient[Any]) -> None:
        from .conftest import login

        token = await login(module_api, world.outsider.email)
        assert (await module_api.get("/v1/users/me", headers=bearer(token))).status_code == 200
        assert (await module_api.post("/v1/auth/logout", headers=bearer(token))).status_code == 204
        _assert_401(await module_api.get("/v1/users/me", headers=bearer(token)), openai=False)


class TestRotation:
    async def test_old_key_works_during_grace_then_not(self, world: World, module_api: AsyncTestClient[Any],
                                                       replica1: AsyncTestClient[Any]) -> None:
        member = world.a.actors["member"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(member.token),
                                  json={"name": "rotating", "allowed_models": ["m1"], "rpm_limit": 5})
        old, old_id = r.json()["key"], r.json()["api_key"]["id"]
        assert (await replica1.get("/v1/whoami", headers=bearer(old))).status_code == 200
        grace = 3.0
        loop = asyncio.get_running_loop()
        rotated = loop.time()
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys/{old_id}/rotate", headers=bearer(member.token),
                                  json={"grace_seconds": grace})
        assert r.status_code == 201, r.text
        new = r.json()
        assert new["api_key"]["rotated_from"] == old_id
        assert new["api_key"]["allowed_models"] == ["m1"] and new["api_key"]["rpm_limit"] == 5
        assert (await replica1.get("/v1/whoami", headers=bearer(new["key"]))).status_code == 200
        # Poll the old key until it is refused: it must keep working for the whole grace period (measured
        # from before the rotation was asked for, so a slow machine cannot make this pass early) and stop
        # soon after it.
        while (r := await replica1.get("/v1/whoami", headers=bearer(old))).status_code == 200:
            assert loop.time() - rotated < grace + 30, "the old key still works long after its grace period"
            await asyncio.sleep(0.1)
        assert loop.time() - rotated >= grace, "the old key stopped working before its grace period ended"
        _assert_401(r, openai=True)
        assert (await replica1.get("/v1/whoami", headers=bearer(new["key"]))).status_code == 200

    async def test_rotation_with_no_grace_revokes_now(self, world: World, module_api: AsyncTestClient[Any],
                                                      replica1: AsyncTestClient[Any]) -> None:
        member = world.a.actors["member"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(member.token), json={"name": "r"})
        old, old_id = r.json()["key"], r.json()["api_key"]["id"]
        assert (await replica1.get("/v1/whoami", headers=bearer(old))).status_code == 200
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys/{old_id}/rotate", headers=bearer(member.token),
                                  json={"grace_seconds": 0})
        assert r.status_code == 201
        _assert_401(await replica1.get("/v1/whoami", headers=bearer(old)), openai=True)
