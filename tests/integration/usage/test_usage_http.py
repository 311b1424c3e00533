"""The usage ledger and policy endpoints on the management API, with a fixed principal standing in for
authentication (``principal`` dependency overridden)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole, Principal
from aiaas.usage import service
from usage_support import completion


async def _client(settings: Settings, principal: Principal) -> AsyncIterator[AsyncTestClient[Any]]:
    container = Container(settings, role="api")
    app = api.create_app(container, extra_dependencies={
        "principal": Provide(lambda: principal, sync_to_thread=False)})
    async with AsyncTestClient(app=RequestContext(app, role="api"), raise_server_exceptions=False) as c:
        yield c


ORG = str(uuid.uuid4())
KEY_A, KEY_B = str(uuid.uuid4()), str(uuid.uuid4())
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
async def seeded(settings: Settings) -> str:
    db = Database(settings, role="test")
    events = [completion(ORG, prompt=i, completion_tokens=1, key_id=KEY_A if i % 2 else KEY_B,
                         model="m1" if i < 30 else "m2", status="ok" if i % 5 else "error",
                         occurred_at=T0 + dt.timedelta(minutes=i)) for i in range(45)]
    async with db.unit_of_work("usage") as s:
        await service.record_completions(s, events)
    await db.dispose()
    return ORG


def _member(org: str = ORG) -> Principal:
    return Principal(kind="api_key", user_id=str(uuid.uuid4()), org_id=org, key_id=KEY_A, org_role=OrgRole.MEMBER)


class TestListRequests:
    async def test_cursor_pages_through_everything_newest_first(self, settings: Settings, seeded: str) -> None:
        async for c in _client(settings, _member()):
            seen: list[dict[str, Any]] = []
            cursor = None
            while True:
                r = await c.get("/v1/usage/requests", params={"limit": 10, **({"cursor": cursor} if cursor else {})})
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

    async def test_filters(self, settings: Settings, seeded: str) -> None:
        async for c in _client(settings, _member()):
            since, until = T0 + dt.timedelta(minutes=10), T0 + dt.timedelta(minutes=20)
            r = await c.get("/v1/usage/requests", params={
                "model": "m1", "key_id": KEY_A, "status": "ok", "limit": 1000,
                "since": since.isoformat(), "until": until.isoformat()})
        rows = r.json()["data"]
        expected = [i for i in range(10, 20) if i % 2 and i % 5]
        assert sorted(row["prompt_tokens"] for row in rows) == expected

    async def test_session_needs_org_id_and_membership(self, settings: Settings, seeded: str) -> None:
        stranger = Principal(kind="session", user_id=str(uuid.uuid4()))
        async for c in _client(settings, stranger):
            assert (await c.get("/v1/usage/requests")).status_code == 400
            r = await c.get("/v1/usage/requests", params={"org_id": ORG})
            assert r.status_code == 404
        admin = Principal(kind="session", user_id=str(uuid.uuid4()), platform_admin=True)
        async for c in _client(settings, admin):
            r = await c.get("/v1/usage/requests", params={"org_id": ORG, "limit": 5})
            assert r.status_code == 200 and len(r.json()["data"]) == 5

    async def test_other_orgs_key_sees_nothing(self, settings: Settings, seeded: str) -> None:
        async for c in _client(settings, _member(str(uuid.uuid4()))):
            r = await c.get("/v1/usage/requests")
            assert r.json()["data"] == []
            assert (await c.get("/v1/usage/requests", params={"org_id": ORG})).status_code == 404

    @pytest.mark.parametrize("params", [{"cursor": "garbage"}, {"limit": 0}, {"limit": 5000}, {"key_id": "nope"},
                                        {"since": "yesterday"}, {"since": "2026-11-01T00:00:00"}])
    async def test_bad_input_is_problem_json(self, settings: Settings, seeded: str, params: dict[str, Any]) -> None:
        async for c in _client(settings, _member()):
            r = await c.get("/v1/usage/requests", params=params)
        assert r.status_code in (400, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")


class TestCsvExport:
    async def test_export_has_every_row(self, settings: Settings, seeded: str) -> None:
        async for c in _client(settings, _member()):
            r = await c.get("/v1/usage/requests.csv", params={"model": "m2"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == 15
        assert sum(int(row["total_tokens"]) for row in rows) == sum(i + 1 for i in range(30, 45))


class TestPolicy:
    async def test_owner_sets_and_reads_policy(self, settings: Settings) -> None:
        org = str(uuid.uuid4())
        owner = Principal(kind="api_key", user_id=None, org_id=org, org_role=OrgRole.OWNER)
        async for c in _client(settings, owner):
            r = await c.get(f"/v1/orgs/{org}/usage-policy")
            assert r.json()["redis_failure_mode"] == "closed" and r.json()["rpm_limit"] is None
            body = {"rpm_limit": 60, "tpm_limit": 90000, "monthly_token_budget": 1_000_000,
                    "redis_failure_mode": "open"}
            r = await c.put(f"/v1/orgs/{org}/usage-policy", json=body)
            assert r.status_code == 200, r.text
            r = await c.get(f"/v1/orgs/{org}/usage-policy")
            assert r.json() | {} == {"org_id": org, "default_max_tokens": 4096, **body}
            assert (await c.put(f"/v1/orgs/{org}/usage-policy", json={"rpm_limit": 0})).status_code in (400, 422)
            assert (await c.put(f"/v1/orgs/{org}/usage-policy", json={"bogus": 1})).status_code in (400, 422)
            other = str(uuid.uuid4())
            assert (await c.put(f"/v1/orgs/{other}/usage-policy", json=body)).status_code == 404
            assert (await c.get("/v1/orgs/not-a-uuid/usage-policy")).status_code in (400, 404)

    async def test_streamer_cache_sees_the_new_policy(self, settings: Settings) -> None:
        org = str(uuid.uuid4())
        owner = Principal(kind="api_key", user_id=None, org_id=org, org_role=OrgRole.OWNER)
        streamer = Container(settings, role="streamer")
        try:
            assert (await streamer.usage_policies.get(org)).rpm_limit is None
            async for c in _client(settings, owner):
                await c.put(f"/v1/orgs/{org}/usage-policy", json={"rpm_limit": 5})
            streamer.usage_policies._memory.clear()  # the process cache lapses after a few seconds
            assert (await streamer.usage_policies.get(org)).rpm_limit == 5
        finally:
            await streamer.stop()
