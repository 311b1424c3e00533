"""The usage ledger and policy endpoints on the management API, through real authentication."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole
from aiaas.usage import service
from identity_support import Org, bearer, org_with_keys, person, session_token
from usage_support import completion

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@dataclass
class World:
    org: Org  # keys: owner, a (member), b (member)
    other: Org  # another tenant: keys owner, a
    stranger_email: str  # a person in no org
    admin_email: str  # a platform admin


@pytest.fixture(scope="module")
async def world(session_settings: Settings) -> World:
    container = Container(session_settings, role="api")
    try:
        org = await org_with_keys(container, members={"a": OrgRole.MEMBER, "b": OrgRole.MEMBER})
        other = await org_with_keys(container, members={"a": OrgRole.MEMBER})
        stranger = await person(container, label="stranger")
        admin = await person(container, label="admin", platform_admin=True)
        key_a, key_b = org.keys["a"].id, org.keys["b"].id
        events = [completion(org.id, prompt=i, completion_tokens=1, key_id=key_a if i % 2 else key_b,
                             model="m1" if i < 30 else "m2", status="ok" if i % 5 else "error",
                             occurred_at=T0 + dt.timedelta(minutes=i)) for i in range(45)]
        async with container.db.unit_of_work("usage") as s:
            await service.record_completions(s, events)
        return World(org=org, other=other, stranger_email=stranger.email, admin_email=admin.email)
    finally:
        await container.stop()


@pytest.fixture(scope="module")
async def client(session_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = RequestContext(api.create_app(Container(session_settings, role="api")), role="api")
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        yield c


class TestListRequests:
    async def test_cursor_pages_through_everything_newest_first(self, client: AsyncTestClient[Any],
                                                                world: World) -> None:
        c, h = client, bearer(world.org.keys["a"].secret)
        if True:
            seen: list[dict[str, Any]] = []
            cursor = None
            while True:
                r = await c.get("/v1/usage/requests", params={"limit": 10, **({"cursor": cursor} if cursor else {})},
                                headers=h)
                assert r.status_code == 200, r.text
                page = r.json()
                seen += page["data"]
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    break
        assert len(seen) == 45
        times = [row["occurred_at"] for row in seen]
        assert times == sorted(times, reverse=True)
        assert len({row["event_id"] for row in seen}) == 45

    async def test_filters(self, client: AsyncTestClient[Any], world: World) -> None:
        c, h = client, bearer(world.org.keys["a"].secret)
        if True:
            since, until = T0 + dt.timedelta(minutes=10), T0 + dt.timedelta(minutes=20)
            r = await c.get("/v1/usage/requests", params={
                "model": "m1", "key_id": world.org.keys["a"].id, "status": "ok", "limit": 1000,
                "since": since.isoformat(), "until": until.isoformat()}, headers=h)
        rows = r.json()["data"]
        expected = [i for i in range(10, 20) if i % 2 and i % 5]
        assert sorted(row["prompt_tokens"] for row in rows) == expected

    async def test_session_needs_org_id_and_membership(self, client: AsyncTestClient[Any], world: World) -> None:
        c = client
        stranger = bearer(await session_token(c, world.stranger_email))
        assert (await c.get("/v1/usage/requests", headers=stranger)).status_code == 400
        r = await c.get("/v1/usage/requests", params={"org_id": world.org.id}, headers=stranger)
        assert r.status_code == 404
        admin = bearer(await session_token(c, world.admin_email))
        r = await c.get("/v1/usage/requests", params={"org_id": world.org.id, "limit": 5}, headers=admin)
        assert r.status_code == 200 and len(r.json()["data"]) == 5

    async def test_other_orgs_key_sees_nothing(self, client: AsyncTestClient[Any], world: World) -> None:
        h = bearer(world.other.keys["a"].secret)
        r = await client.get("/v1/usage/requests", headers=h)
        assert r.status_code == 200 and r.json()["data"] == []
        assert (await client.get("/v1/usage/requests", params={"org_id": world.org.id}, headers=h)).status_code == 404

    @pytest.mark.parametrize("params", [{"cursor": "garbage"}, {"limit": 0}, {"limit": 5000}, {"key_id": "nope"},
                                        {"since": "yesterday"}, {"since": "2026-11-01T00:00:00"}])
    async def test_bad_input_is_problem_json(self, client: AsyncTestClient[Any], world: World,
                                             params: dict[str, Any]) -> None:
        r = await client.get("/v1/usage/requests", params=params, headers=bearer(world.org.keys["a"].secret))
        assert r.status_code in (400, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")


class TestCsvExport:
    async def test_export_has_every_row(self, client: AsyncTestClient[Any], world: World) -> None:
        r = await client.get("/v1/usage/requests.csv", params={"model": "m2"},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == 15
        assert sum(int(row["total_tokens"]) for row in rows) == sum(i + 1 for i in range(30, 45))


class TestPolicy:
    async def test_owner_sets_and_reads_policy(self, client: AsyncTestClient[Any], world: World) -> None:
        org = world.other.id
        c = client
        c.headers.update(bearer(world.other.keys["owner"].secret))
        try:
            r = await c.get(f"/v1/orgs/{org}/usage-policy")
            assert r.json()["redis_failure_mode"] == "closed" and r.json()["rpm_limit"] is None
            body = {"rpm_limit": 60, "tpm_limit": 90000, "monthly_token_budget": 1_000_000,
                    "monthly_spend_limit_usd": "250.50", "redis_failure_mode": "open"}
            r = await c.put(f"/v1/orgs/{org}/usage-policy", json=body)
            assert r.status_code == 200, r.text
            r = await c.get(f"/v1/orgs/{org}/usage-policy")
            assert r.json() | {} == {"org_id": org, "default_max_tokens": 4096, **body,
                                     "monthly_spend_limit_usd": "250.5"}
            # A JSON number is taken too; limits out of range are a 400 naming the field, and change nothing.
            r = await c.put(f"/v1/orgs/{org}/usage-policy", json={**body, "monthly_spend_limit_usd": 12.25})
            assert r.status_code == 200 and r.json()["monthly_spend_limit_usd"] == "12.25", r.text
            for bad in ("-1", "9000001", "0.0000000001", "NaN", "ten dollars"):
                r = await c.put(f"/v1/orgs/{org}/usage-policy", json={**body, "monthly_spend_limit_usd": bad})
                assert r.status_code in (400, 422), (bad, r.text)
                assert "monthly_spend_limit_usd" in r.json()["detail"]
            assert (await c.get(f"/v1/orgs/{org}/usage-policy")).json()["monthly_spend_limit_usd"] == "12.25"
            assert (await c.put(f"/v1/orgs/{org}/usage-policy", json={"rpm_limit": 0})).status_code in (400, 422)
            assert (await c.put(f"/v1/orgs/{org}/usage-policy", json={"bogus": 1})).status_code in (400, 422)
            other = str(uuid.uuid4())
            assert (await c.put(f"/v1/orgs/{other}/usage-policy", json=body)).status_code == 404
            assert (await c.get("/v1/orgs/not-a-uuid/usage-policy")).status_code in (400, 404)
            member = bearer(world.other.keys["a"].secret)
            assert (await c.put(f"/v1/orgs/{org}/usage-policy", json=body, headers=member)).status_code == 403
        finally:
            c.headers.pop("authorization", None)

    async def test_streamer_cache_sees_the_new_policy(self, session_settings: Settings,
                                                      client: AsyncTestClient[Any], world: World) -> None:
        # The api client of this module and the streamer share the module's keys, as replicas do.
        org = world.org.id
        streamer = Container(session_settings, role="streamer")
        try:
            assert (await streamer.usage_policies.get(org)).rpm_limit is None
            r = await client.put(f"/v1/orgs/{org}/usage-policy", json={"rpm_limit": 5},
                                 headers=bearer(world.org.keys["owner"].secret))
            assert r.status_code == 200, r.text
            assert (await streamer.usage_policies.get(org)).rpm_limit == 5
        finally:
            await streamer.stop()
