"""Smoke: the world builds and the basic flows answer."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from .conftest import World, bearer


class TestWorld:
    async def test_owner_reads_org(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        r = await module_api.get(f"/v1/orgs/{world.a.org_id}", headers=bearer(world.a.actors["owner"].token))
        assert r.status_code == 200, r.text
        assert r.json()["role"] == "owner"
        assert world.a.actors["member"].key is not None
        assert world.a.actors["viewer"].key is None
