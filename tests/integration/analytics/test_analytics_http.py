"""The analytics API and OpenAI's organization Usage and Costs APIs on the management API, through real
authentication, over projections fed by completion events.

Response shapes are checked against the schemas of OpenAI's published OpenAPI document
(``tests/contracts/openai_organization_usage.json``, an excerpt of it).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from litestar.testing import AsyncTestClient

from aiaas.analytics import api as analytics_api
from aiaas.analytics import service
from aiaas.analytics.schemas import PriceCreate
from aiaas.analytics.service import price_book
from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.events import utcnow
from aiaas.kernel.http import RequestContext
from aiaas.kernel.security import OrgRole
from identity_support import Org, bearer, org_with_keys, person, session_token
from usage_support import completion

T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)  # a Monday, 00:00 UTC
CONTRACT = json.loads((Path(__file__).parents[2] / "contracts" / "openai_organization_usage.json").read_text())


def _openai_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}", "components": CONTRACT["components"]}


def assert_openai_shape(doc: Any, result: str) -> None:
    """``doc`` is a valid ``UsageResponse`` whose results are all ``result`` objects."""
    jsonschema.validate(doc, _openai_schema("UsageResponse"))
    for bucket in doc["data"]:
        for r in bucket["results"]:
            jsonschema.validate(r, _openai_schema(result))


@dataclass
class World:
    org: Org
    other: Org
    model: str  # priced
    unpriced: str
    admin_email: str
    cost: Decimal  # the exact cost of everything the org did


@pytest.fixture(scope="module")
async def world(session_settings: Settings) -> World:
    container = Container(session_settings, role="api")
    try:
        org = await org_with_keys(container, members={"a": OrgRole.MEMBER})
        other = await org_with_keys(container, members={})
        admin = await person(container, label="admin", platform_admin=True)
        model, unpriced = f"m-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
        async with container.db.unit_of_work("analytics") as s:
            await price_book.add_price(s, PriceCreate(model=model, input_per_mtok=Decimal("2.5"),
                                                      cached_input_per_mtok=Decimal("1.25"),
                                                      output_per_mtok=Decimal("10"), effective_from=T0))
        key_a, key_o = org.keys["a"].id, org.keys["owner"].id
        events = []
        cost = Decimal(0)
        for i in range(48):  # two days, one request an hour, alternating keys; every 4th to the unpriced model
            m = unpriced if i % 4 == 3 else model
            # The Responses and Messages APIs are completions too (OpenAI's report counts them with chat).
            endpoint = {1: "responses", 5: "messages"}.get(i % 8, "chat.completions")
            ev = completion(org.id, prompt=100 + i, completion_tokens=10 + i, cached_prompt_tokens=i, endpoint=endpoint,
                            key_id=key_a if i % 2 else key_o, user_id=org.keys["a"].user_id, model=m,
                            status="ok" if i % 6 else "error", error_type=None if i % 6 else "upstream_error",
                            latency_ms=10.0 + i, ttfb_ms=5.0 + i, occurred_at=T0 + dt.timedelta(hours=i, minutes=7))
            if m == model:
                cost += (Decimal(100) * Decimal("2.5") + Decimal(i) * Decimal("1.25")
                         + Decimal(10 + i) * Decimal(10)) / Decimal(1_000_000)
            events.append(ev)
        events.append(completion(org.id, endpoint="embeddings", model=model, prompt=7, completion_tokens=0,
                                 key_id=key_a, occurred_at=T0 + dt.timedelta(hours=3)))
        cost += Decimal(7) * Decimal("2.5") / Decimal(1_000_000)
        events.append(completion(other.id, model=model, prompt=999, completion_tokens=999,
                                 occurred_at=T0 + dt.timedelta(hours=1)))
        async with container.db.unit_of_work("analytics") as s:
            await service.apply_events(s, events)
        return World(org=org, other=other, model=model, unpriced=unpriced, admin_email=admin.email, cost=cost)
    finally:
        await container.stop()


@pytest.fixture(scope="module")
async def client(session_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = RequestContext(api.create_app(Container(session_settings, role="api")), role="api")
    async with AsyncTestClient(app=app, raise_server_exceptions=False) as c:
        yield c


RANGE = {"start": T0.isoformat(), "end": (T0 + dt.timedelta(days=2)).isoformat()}


class TestUsage:
    async def test_day_totals_are_exact_and_unpriced_is_not_free(self, client: AsyncTestClient[Any],
                                                                world: World) -> None:
        r = await client.get("/v1/analytics/usage", params={**RANGE, "granularity": "day", "group_by": "model"},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        assert {row["bucket_start"][:10] for row in rows} == {"2026-11-02", "2026-11-03"}
        priced = [row for row in rows if row["model"] == world.model]
        assert sum(Decimal(row["cost_usd"]) for row in priced) == world.cost
        unpriced = [row for row in rows if row["model"] == world.unpriced]
        assert sum(row["unpriced_requests"] for row in unpriced) == 12
        assert all(row["cost_usd"] == "0" for row in unpriced)
        assert sum(row["requests"] for row in rows) == 49
        assert sum(row["errors"] for row in rows) == 8

    async def test_hour_buckets_page_through_with_the_cursor(self, client: AsyncTestClient[Any],
                                                             world: World) -> None:
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {**RANGE, "granularity": "hour", "group_by": ["model", "api_key"], "limit": 7}
            if cursor:
                params["cursor"] = cursor
            r = await client.get("/v1/analytics/usage", params=params, headers=bearer(world.org.keys["owner"].secret))
            assert r.status_code == 200, r.text
            seen += r.json()["data"]
            cursor = r.json()["next_cursor"]
            if not r.json()["has_more"]:
                break
        assert len(seen) == 49  # an hour each, and the embeddings request (another model than hour 3's)
        assert sum(row["prompt_tokens"] for row in seen) == sum(100 + i for i in range(48)) + 7
        starts = [(row["bucket_start"], row["model"], row["api_key_id"]) for row in seen]
        assert len(set(starts)) == len(starts)

    async def test_another_tenant_sees_nothing_of_it(self, client: AsyncTestClient[Any], world: World) -> None:
        h = bearer(world.other.keys["owner"].secret)
        r = await client.get("/v1/analytics/usage", params=RANGE, headers=h)
        assert r.status_code == 200
        assert sum(row["requests"] for row in r.json()["data"]) == 1
        r = await client.get("/v1/analytics/usage", params={**RANGE, "org_id": world.org.id}, headers=h)
        assert r.status_code == 404

    async def test_a_platform_admin_reads_across_orgs(self, client: AsyncTestClient[Any], world: World) -> None:
        token = await session_token(client, world.admin_email)
        r = await client.get("/v1/analytics/usage", params={**RANGE, "model": world.model}, headers=bearer(token))
        assert r.status_code == 200, r.text
        assert sum(row["requests"] for row in r.json()["data"]) >= 36 + 1 + 1

    @pytest.mark.parametrize(("params", "status", "param"), [
        ({"start": "2026-11-03T00:00:00Z", "end": "2026-11-02T00:00:00Z"}, 400, "start"),
        ({**RANGE, "group_by": "colour"}, 400, "group_by"),
        ({**RANGE, "cursor": "not-a-cursor"}, 400, "cursor"),
        ({**RANGE, "api_key": "nope"}, 400, "api_key"),
        ({"start": "2026-11-02T00:00:00", "end": "2026-11-03T00:00:00Z"}, 400, "start"),
        ({**RANGE, "granularity": "week"}, 422, "granularity"),
        ({**RANGE, "limit": 1001}, 422, "limit"),
        ({"end": "2026-11-03T00:00:00Z"}, 400, "start"),
    ])
    async def test_bad_input_is_a_clear_error(self, client: AsyncTestClient[Any], world: World,
                                              params: dict[str, Any], status: int, param: str) -> None:
        r = await client.get("/v1/analytics/usage", params=params, headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        doc = r.json()
        assert param in doc["detail"] or [e["key"] for e in doc.get("errors", [])] == [param], doc


class TestPerformance:
    async def test_quantiles_from_merged_histograms(self, client: AsyncTestClient[Any], world: World) -> None:
        r = await client.get("/v1/analytics/performance", params={**RANGE, "model": world.model},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["granularity"] == "day" and doc["relative_error"] == 0.01
        rows = [row for row in doc["data"] if row["model"] == world.model]
        assert sum(row["requests"] for row in rows) == 37
        chat = [10.0 + i for i in range(48) if i % 4 != 3] + [40.0]  # the embeddings request's latency
        chat.sort()
        p50 = chat[(len(chat) - 1) // 2]
        (row,) = [x for x in rows if x["deployment"] == "d1"]
        assert abs(row["latency_ms"]["p50"] - p50) <= 0.01 * p50
        assert row["error_rate"] == round(row["errors"] / row["requests"], 6)

    @pytest.mark.parametrize("group", ["api_key", "user", "status", "error_type", "endpoint"])
    async def test_every_usage_grouping_works_and_the_groups_add_up(
        self, client: AsyncTestClient[Any], world: World, group: str
    ) -> None:
        r = await client.get("/v1/analytics/performance", params={**RANGE, "group_by": group},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        field = {"api_key": "api_key_id", "user": "user_id"}.get(group, group)
        assert len({row[field] for row in rows}) == len(rows)
        assert sum(row["requests"] for row in rows) == 49  # 48 chat requests and one embeddings request
        by_key = {row[field]: row for row in rows}
        if group == "api_key":
            assert set(by_key) == {world.org.keys["a"].id, world.org.keys["owner"].id}
            assert all(row["latency_ms"]["p50"] is not None for row in rows)


class TestOpenAIShapes:
    async def test_completions_usage(self, client: AsyncTestClient[Any], world: World) -> None:
        r = await client.get("/v1/organization/usage/completions",
                             params={"start_time": int(T0.timestamp()), "end_time": int(T0.timestamp()) + 2 * 86400,
                                     "group_by[]": ["model", "api_key_id"]},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert_openai_shape(doc, "UsageCompletionsResult")
        assert [b["start_time"] for b in doc["data"]] == [int(T0.timestamp()), int(T0.timestamp()) + 86400]
        results = [x for b in doc["data"] for x in b["results"]]
        assert sum(x["input_tokens"] for x in results) == sum(100 + i for i in range(48))
        assert sum(x["input_cached_tokens"] for x in results) == sum(range(48))
        assert sum(x["output_tokens"] for x in results) == sum(10 + i for i in range(48))
        assert sum(x["num_model_requests"] for x in results) == 48
        assert {x["api_key_id"] for x in results} == {world.org.keys["a"].id, world.org.keys["owner"].id}
        assert all(x["project_id"] is None for x in results)

    async def test_free_token_counting_is_no_model_request(self, client: AsyncTestClient[Any],
                                                           session_settings: Settings) -> None:
        container = Container(session_settings, role="api")
        try:
            org = await org_with_keys(container, members={})
            at = T0 + dt.timedelta(hours=2)
            async with container.db.unit_of_work("analytics") as s:
                await service.apply_events(s, [
                    completion(org.id, endpoint="messages", prompt=5, completion_tokens=2, occurred_at=at),
                    completion(org.id, endpoint="messages.count_tokens", prompt=0, completion_tokens=0,
                               occurred_at=at)])
        finally:
            await container.stop()
        r = await client.get("/v1/organization/usage/completions", params={"start_time": int(T0.timestamp())},
                             headers=bearer(org.keys["owner"].secret))
        assert r.status_code == 200, r.text
        results = [x for b in r.json()["data"] for x in b["results"]]
        assert sum(x["num_model_requests"] for x in results) == 1
        assert sum(x["input_tokens"] for x in results) == 5

    async def test_embeddings_usage_is_its_own(self, client: AsyncTestClient[Any], world: World) -> None:
        r = await client.get("/v1/organization/usage/embeddings",
                             params={"start_time": int(T0.timestamp()), "bucket_width": "1h", "limit": 48},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert_openai_shape(doc, "UsageEmbeddingsResult")
        assert len(doc["data"]) == 48 and doc["has_more"] is True and doc["next_page"]
        assert sum(x["input_tokens"] for b in doc["data"] for x in b["results"]) == 7

    async def test_pages_follow_next_page(self, client: AsyncTestClient[Any], world: World) -> None:
        h = bearer(world.org.keys["a"].secret)
        params: dict[str, Any] = {"start_time": int(T0.timestamp()), "end_time": int(T0.timestamp()) + 2 * 86400,
                                  "bucket_width": "1h", "limit": 5}
        starts: list[int] = []
        while True:
            r = await client.get("/v1/organization/usage/completions", params=params, headers=h)
            assert r.status_code == 200, r.text
            starts += [b["start_time"] for b in r.json()["data"]]
            if not r.json()["has_more"]:
                break
            params["page"] = r.json()["next_page"]
        assert starts == [int(T0.timestamp()) + 3600 * i for i in range(48)]

    async def test_costs(self, client: AsyncTestClient[Any], world: World) -> None:
        r = await client.get("/v1/organization/costs",
                             params={"start_time": int(T0.timestamp()), "end_time": int(T0.timestamp()) + 2 * 86400,
                                     "group_by[]": "line_item"},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 200, r.text
        doc = r.json()
        assert_openai_shape(doc, "CostsResult")
        priced = [x for b in doc["data"] for x in b["results"] if x["line_item"] == world.model]
        assert all(x["amount"]["currency"] == "usd" for x in priced)
        assert abs(sum(x["amount"]["value"] for x in priced) - float(world.cost)) < 1e-9

    @pytest.mark.parametrize(("path", "params", "param"), [
        ("/v1/organization/usage/completions", {"bucket_width": "1d", "limit": 32}, "limit"),
        ("/v1/organization/usage/completions", {"bucket_width": "1h", "limit": 169}, "limit"),
        ("/v1/organization/usage/completions", {"bucket_width": "1m", "limit": 1441}, "limit"),
        ("/v1/organization/usage/completions", {"bucket_width": "2d"}, "bucket_width"),
        ("/v1/organization/usage/completions", {"group_by[]": "line_item"}, "group_by"),
        ("/v1/organization/usage/completions", {"page": "%%%"}, "page"),
        ("/v1/organization/costs", {"bucket_width": "1h"}, "bucket_width"),
        ("/v1/organization/costs", {"limit": 181}, "limit"),
        ("/v1/organization/usage/embeddings", {"group_by[]": "batch"}, "group_by"),
    ])
    async def test_openai_limits_and_bad_input(self, client: AsyncTestClient[Any], world: World, path: str,
                                               params: dict[str, Any], param: str) -> None:
        r = await client.get(path, params={"start_time": int(T0.timestamp()), **params},
                             headers=bearer(world.org.keys["a"].secret))
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["error"]["param"] == param  # OpenAI's error object, in the problem document
        assert r.json()["error"]["type"] == "invalid_request_error"

    async def test_every_openai_parameter_is_accepted(self, client: AsyncTestClient[Any], world: World) -> None:
        text = (Path(__file__).parents[3] / "contracts" / "openapi.yaml").read_text()
        contract = yaml.load(text, Loader=yaml.CSafeLoader)
        ours = {p["name"] for path in ("/v1/organization/usage/completions", "/v1/organization/costs")
                for p in contract["paths"][path]["get"]["parameters"]}
        theirs = {name + ("[]" if spec["schema"].get("type") == "array" else "")
                  for p in ("/organization/usage/completions", "/organization/costs")
                  for name, spec in CONTRACT["parameters"][p].items()}
        assert theirs <= ours, sorted(theirs - ours)


class TestPriceBook:
    async def test_only_platform_admins_change_it(self, client: AsyncTestClient[Any], world: World) -> None:
        body = {"model": f"p-{uuid.uuid4().hex[:6]}", "input_per_mtok": "0.15", "output_per_mtok": "0.6"}
        r = await client.post("/v1/admin/prices", json=body, headers=bearer(world.org.keys["owner"].secret))
        assert r.status_code == 403
        token = await session_token(client, world.admin_email)
        r = await client.post("/v1/admin/prices", json=body, headers=bearer(token))
        assert r.status_code == 201, r.text
        assert r.json()["input_per_mtok"] == "0.15" and r.json()["deployment"] is None
        r = await client.get("/v1/admin/prices", params={"model": body["model"]}, headers=bearer(token))
        assert [p["output_per_mtok"] for p in r.json()] == ["0.6"]

    async def test_a_new_price_reaches_the_catalog_entry_admission_reads(
        self, client: AsyncTestClient[Any], world: World, session_settings: Settings
    ) -> None:
        token = await session_token(client, world.admin_email)
        name = f"priced-{uuid.uuid4().hex[:6]}"
        r = await client.post("/v1/admin/models", headers=bearer(token), json={
            "name": name, "capabilities": ["chat"], "deployments": [
                {"name": "d", "provider": "openai", "upstream_model": "x", "base_url": "https://up.example"}]})
        assert r.status_code == 201, r.text
        assert r.json()["prices"] == []
        later = (utcnow() + dt.timedelta(days=30)).isoformat()
        for body in ({"model": name, "input_per_mtok": "3", "output_per_mtok": "15"},
                     {"model": name, "input_per_mtok": "4", "output_per_mtok": "20", "effective_from": later},
                     {"model": name, "deployment": "d", "input_per_mtok": "3.5", "output_per_mtok": "16"}):
            assert (await client.post("/v1/admin/prices", json=body, headers=bearer(token))).status_code == 201
        container = Container(session_settings, role="streamer")
        try:
            found = await container.catalog.lookup(name, world.org.id, "unused-breaker-key")
            assert found.model is not None
            prices = found.model.prices
            # Newest effective time first: the one from next month, then the deployment's, then the model's.
            assert [(str(p.input_per_mtok), p.deployment) for p in prices] == [("4", ""), ("3.5", "d"), ("3", "")]
            r = await client.get(f"/v1/admin/models/{name}", headers=bearer(token))
            assert [p["input_per_mtok"] for p in r.json()["prices"]] == ["4", "3.5", "3"]
            # The worker's periodic sync has nothing to change for it (it does hand over prices added
            # behind the API's back, as this module's fixture did), a second sync nothing at all; and a model
            # deleted and added again keeps the prices of its name.
            sync = (container.session_factory("analytics"), container.inference_session, container.catalog)
            assert name not in await analytics_api.sync_admission_prices(*sync)
            assert await analytics_api.sync_admission_prices(*sync) == []
            assert (await client.delete(f"/v1/admin/models/{name}", headers=bearer(token))).status_code == 204
            await client.post("/v1/admin/models", headers=bearer(token), json={
                "name": name, "capabilities": ["chat"], "deployments": [
                    {"name": "d", "provider": "openai", "upstream_model": "x", "base_url": "https://up.example"}]})
            found = await container.catalog.lookup(name, world.org.id, "unused-breaker-key")
            assert found.model is not None and len(found.model.prices) == 3
        finally:
            await container.stop()

    @pytest.mark.parametrize(("change", "param"), [
        ({"input_per_mtok": "-1"}, "input_per_mtok"),
        ({"output_per_mtok": "0.0000000001"}, "output_per_mtok"),
        ({"cached_input_per_mtok": "2000000"}, "cached_input_per_mtok"),
        ({"effective_from": "2026-11-01T00:00:00"}, "effective_from"),
        ({"api_key": "sk-oops"}, "api_key"),  # pragma: allowlist secret
        ({"input_per_mtok": "NaN"}, "input_per_mtok"),
    ])
    async def test_bad_prices_are_refused_and_nothing_is_added(self, client: AsyncTestClient[Any], world: World,
                                                               change: dict[str, Any], param: str) -> None:
        token = await session_token(client, world.admin_email)
        model = f"p-{uuid.uuid4().hex[:6]}"
        r = await client.post("/v1/admin/prices", json={"model": model, "input_per_mtok": "1",
                                                          "output_per_mtok": "2", **change}, headers=bearer(token))
        assert r.status_code in (400, 422), r.text  # 422: the body does not match the schema
        assert param in r.json()["detail"], r.json()
        r = await client.get("/v1/admin/prices", params={"model": model}, headers=bearer(token))
        assert r.json() == []
