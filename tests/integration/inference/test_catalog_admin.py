"""The catalog admin API on the management app: platform admins only, changes reach the Redis cache."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Request
from litestar.testing import AsyncTestClient

from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal

ADMIN = Principal(kind="session", user_id=str(uuid.uuid4()), platform_admin=True)
MEMBER = Principal(kind="session", user_id=str(uuid.uuid4()), org_id=str(uuid.uuid4()), org_role=OrgRole.OWNER)


def _principal(request: Request[Any, Any, Any]) -> Principal:
    return ADMIN if request.headers.get("authorization") == "Bearer admin" else MEMBER


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[tuple[AsyncTestClient[Any], Container]]:
    app = RequestContext(api.create_app(Container(settings, role="api"), principal_provider=_principal), role="api")
    # The test client runs the app on its own loop: read the cache through a second container on ours.
    reader = Container(settings, role="api")
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        c.headers["authorization"] = "Bearer admin"
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
        upd["deployments"].append({"name": "two", "upstream_model": "m2", "base_url": "http://127.0.0.1:9/v1",
                                   "weight": 3})
        r = await c.put(f"/v1/admin/models/{name}", json=upd)
        assert r.status_code == 200, r.text
        deps = {d["name"]: d for d in r.json()["deployments"]}
        assert deps["one"]["id"] == dep_id and deps["two"]["weight"] == 3
        assert len((await container.catalog.lookup(name, None, "x")).model.deployments) == 2
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
        r = await c.get("/v1/admin/models", headers={"authorization": "Bearer member"})
        assert r.status_code == 403

    async def test_org_access_policy(self, admin: Any) -> None:
        c, container = admin
        org = str(uuid.uuid4())
        r = await c.put(f"/v1/admin/model-access/{org}", json={"models": ["b", "a"]})
        assert r.status_code == 200 and r.json()["models"] == ["a", "b"]
        assert await container.catalog.org_models(org) == ["a", "b"]
        assert (await c.delete(f"/v1/admin/model-access/{org}")).status_code == 204
        assert await container.catalog.org_models(org) is None
        assert (await c.get("/v1/admin/model-access/not-a-uuid")).status_code == 400
