"""The catalog admin API on the management app: platform admins only, changes reach the Redis cache."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aiaas.auth import api as auth_api
from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.service.routing import Breakers
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.redis import Keys
from support import FIXTURE_BCRYPT_ROUNDS

PASSWORD = "correct horse battery staple"  # pragma: allowlist secret
TOKENS: dict[str, str] = {}


async def _login(c: AsyncTestClient[Any], container: Container, *, platform_admin: bool) -> str:
    email = f"cat-{uuid.uuid4().hex[:10]}@example.com"
    async with container.db.unit_of_work("auth") as s:
        await auth_api.create_user(s, email=email, password=PASSWORD, platform_admin=platform_admin,
                                   rounds=FIXTURE_BCRYPT_ROUNDS,
                                   actor=None)
    r = await c.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[tuple[AsyncTestClient[Any], Container]]:
    """A platform admin's session on the real management app (and a plain user's in TOKENS)."""
    app = RequestContext(api.create_app(Container(settings, role="api")), role="api")
    # The test client runs the app on its own loop: read the cache through a second container on ours.
    reader = Container(settings, role="api")
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        TOKENS["member"] = await _login(c, reader, platform_admin=False)
        c.headers["authorization"] = "Bearer " + await _login(c, reader, platform_admin=True)
        yield c, reader
    await reader.redis.aclose()
    await reader.db.dispose()


def _spec(name: str) -> dict[str, Any]:
    return {"name": name, "capabilities": ["chat"], "deployments": [
        {"name": "one", "upstream_model": "m", "base_url": "http://127.0.0.1:9/v1", "credential_ref": "UPSTREAM_KEY"}]}


class TestCatalogAdmin:
    async def test_create_read_replace_delete_refreshes_cache(self, admin: Any) -> None:
        c, container = admin
        name = f"adm/{uuid.uuid4().hex[:8]}"
        r = await c.post("/v1/admin/models", json=_spec(name))
        assert r.status_code == 201, r.text
        dep_id = r.json()["deployments"][0]["id"]
        cached = await container.catalog.lookup(name, None, "x")
        assert cached.model is not None and cached.model.deployments[0].credential_ref == "UPSTREAM_KEY"
        r = await c.get(f"/v1/admin/models/{name}")
        assert r.status_code == 200 and r.json()["name"] == name
        upd = _spec(name)
        upd.pop("name")
        upd["deployments"].append({"name": "two", "upstream_model": "m2", "base_url": "https://127.0.0.1:9/v1",
                                   "weight": 3, "ca_bundle": "/etc/aiaas/ca.pem"})
        r = await c.put(f"/v1/admin/models/{name}", json=upd)
        assert r.status_code == 200, r.text
        deps = {d["name"]: d for d in r.json()["deployments"]}
        assert deps["one"]["id"] == dep_id and deps["two"]["weight"] == 3
        assert deps["one"]["ca_bundle"] is None and deps["two"]["ca_bundle"] == "/etc/aiaas/ca.pem"
        cached = (await container.catalog.lookup(name, None, "x")).model
        assert [d.ca_bundle for d in cached.deployments] == [None, "/etc/aiaas/ca.pem"]
        assert (await c.delete(f"/v1/admin/models/{name}")).status_code == 204
        assert (await container.catalog.lookup(name, None, "x")).model is None
        assert (await c.get(f"/v1/admin/models/{name}")).status_code == 404

    async def test_duplicate_is_409(self, admin: Any) -> None:
        c, _ = admin
        name = f"adm/{uuid.uuid4().hex[:8]}"
        assert (await c.post("/v1/admin/models", json=_spec(name))).status_code == 201
        r = await c.post("/v1/admin/models", json=_spec(name))
        assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")

    async def test_bad_input_is_problem_json(self, admin: Any) -> None:
        c, _ = admin
        bad = _spec("x")
        bad["deployments"][0]["credential_ref"] = "sk-inline-secret"  # pragma: allowlist secret
        r = await c.post("/v1/admin/models", json=bad)
        assert r.status_code == 422, r.text
        r = await c.post("/v1/admin/models", json={"name": "x", "deployments": [
            {"name": "a", "upstream_model": "m"}]})
        assert r.status_code == 400 and "base_url" in r.json()["detail"]

    async def test_non_admin_is_403(self, admin: Any) -> None:
        c, _ = admin
        r = await c.get("/v1/admin/models", headers={"authorization": "Bearer " + TOKENS["member"]})
        assert r.status_code == 403

    async def test_org_access_policy(self, admin: Any) -> None:
        c, container = admin
        r = await c.post("/v1/orgs", json={"name": f"policy-{uuid.uuid4().hex[:6]}"})
        assert r.status_code == 201, r.text
        org = r.json()["id"]
        missing = str(uuid.uuid4())
        assert (await c.put(f"/v1/admin/model-access/{missing}", json={"models": ["a"]})).status_code == 404
        r = await c.put(f"/v1/admin/model-access/{org}", json={"models": ["b", "a"]})
        assert r.status_code == 200 and r.json()["models"] == ["a", "b"]
        assert await container.catalog.org_models(org) == ["a", "b"]
        assert (await c.delete(f"/v1/admin/model-access/{org}")).status_code == 204
        assert await container.catalog.org_models(org) is None
        # An org id that is not a UUID names no org: the guard answers 404 before the handler runs.
        assert (await c.get("/v1/admin/model-access/not-a-uuid")).status_code == 404


class TestDeploymentHealth:
    async def test_each_deployment_shows_its_breaker_as_the_streamers_see_it(self, admin: Any,
                                                                               settings: Settings) -> None:
        c, container = admin
        name = f"adm/{uuid.uuid4().hex[:8]}"
        spec = _spec(name)
        spec["deployments"].append({"name": "two", "upstream_model": "m2", "base_url": "http://127.0.0.1:9/v1"})
        model = (await c.post("/v1/admin/models", json=spec)).json()
        one = next(d for d in model["deployments"] if d["name"] == "one")
        # A streamer's failures open deployment one's breaker (threshold 2 here), in the shared Redis.
        breakers = Breakers(container.redis, Keys(settings.redis_prefix), failures=2, cooldown=60)
        dep = (await container.catalog.lookup(name, None, "x")).model.deployments[0]
        assert dep.id == one["id"]
        await breakers.failure(name, dep)
        await breakers.failure(name, dep)
        r = await c.get("/v1/admin/deployments")
        assert r.status_code == 200, r.text
        mine = {d["deployment"]: d for d in r.json() if d["model"] == name}
        assert mine["one"]["breaker"] == "open" and mine["one"]["consecutive_failures"] == 2
        assert mine["one"]["open_until"] is not None
        assert mine["two"] | {"deployment_id": None} == {
            "model": name, "deployment": "two", "deployment_id": None, "provider": "openai", "enabled": True,
            "weight": 1, "priority": 0, "breaker": "closed", "consecutive_failures": 0, "open_until": None}
        await c.delete(f"/v1/admin/models/{name}")

    async def test_only_platform_admins_see_it(self, admin: Any) -> None:
        c, _ = admin
        r = await c.get("/v1/admin/deployments", headers={"authorization": f"Bearer {TOKENS['member']}"})
        assert r.status_code == 403
