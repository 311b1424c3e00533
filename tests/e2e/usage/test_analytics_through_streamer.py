"""Requests through a running streamer with the ``openai`` client, a real worker process, then the read
side through the management API: ``/v1/analytics/usage``, and OpenAI's organization Usage and Costs APIs
read with the official client, all equal to the ledger, to the token and to the exact cost.

The upstream reports cached prompt tokens and reasoning tokens, so the cached-input price is exercised.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from decimal import Decimal
from typing import Any

import openai
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from aiaas.analytics.schemas import PriceCreate
from aiaas.analytics.service import price_book
from aiaas.entrypoints import api
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.events import utcnow
from aiaas.kernel.http import RequestContext
from e2e.inference.conftest import with_thread
from e2e.usage.conftest import make_org, start_streamer, start_worker, stop_worker, unique
from fake_upstream import FakeUpstream

pytestmark = [pytest.mark.e2e]

MSG = [{"role": "user", "content": "What does this cost?"}]
IN, CACHED_IN, OUT = Decimal("2.5"), Decimal("1.25"), Decimal("10")
EMBED_IN = Decimal("0.02")


async def _catalog(settings: Settings, up: FakeUpstream, chat: str, embed: str) -> None:
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("inference") as s:
            for name, caps, upstream in ((chat, ["chat", "completions"], "cached-reasoning"),
                                         (embed, ["embeddings"], "fake-embed")):
                await catalog_service.create_model(session=s, spec=ModelSpec(name=name, capabilities=caps, deployments=[
                    DeploymentSpec(name="u", provider="openai", upstream_model=upstream, base_url=up.base_url)]))
        async with container.db.unit_of_work("analytics") as s:
            since = utcnow() - dt.timedelta(days=1)
            await price_book.add_price(s, PriceCreate(model=chat, input_per_mtok=IN, cached_input_per_mtok=CACHED_IN,
                                                      output_per_mtok=OUT, effective_from=since))
            await price_book.add_price(s, PriceCreate(model=embed, input_per_mtok=EMBED_IN, output_per_mtok=Decimal(0),
                                                      effective_from=since))
        await container.catalog.refresh_models([chat, embed])
    finally:
        await container.redis.aclose()
        await container.db.dispose()


async def _ledger(db: Database, org: str) -> list[Any]:
    async with db.unit_of_work("usage") as s:
        return list((await s.execute(text(
            "SELECT endpoint, model, prompt_tokens, cached_prompt_tokens, completion_tokens, reasoning_tokens "
            "FROM usage.requests WHERE org_id = :o"), {"o": org})).all())


async def _applied(db: Database, org: str) -> int:
    async with db.unit_of_work("analytics") as s:
        return int(await s.scalar(text("SELECT count(*) FROM analytics.processed_events WHERE org_id = :o"),
                                  {"o": org}) or 0)


async def _until(check: Any, want: int, timeout: float = 60.0) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = 0
    while loop.time() < deadline:
        got = await check()
        if got >= want:
            return got
        await asyncio.sleep(0.1)
    return got


def _cost(rows: list[Any]) -> Decimal:
    total = Decimal(0)
    for endpoint, _model, prompt, cached, completion, _reasoning in rows:
        if endpoint == "embeddings":
            total += prompt * EMBED_IN / 1_000_000
        else:
            total += ((prompt - cached) * IN + cached * CACHED_IN + completion * OUT) / 1_000_000
    return total


class TestReadSideEqualsTheLedger:
    async def test_usage_completions_and_costs_to_the_token_and_the_cent(
        self, settings: Settings, session_env: dict[str, str], usage_upstream: FakeUpstream,
    ) -> None:
        chat, embed = f"analytics/chat-{unique()}", f"analytics/embed-{unique()}"
        with_thread(_catalog, settings, usage_upstream, chat, embed)
        org = make_org(settings)
        streamer = start_streamer(settings)
        workers: list[subprocess.Popen[bytes]] = [start_worker(session_env)]
        db = Database(settings, role="test")
        key = org.keys["member"].secret
        client = openai.AsyncOpenAI(base_url=streamer.base_url, api_key=key, max_retries=0, timeout=60)
        start = int(utcnow().timestamp())
        try:
            for i in range(12):
                if i % 3 == 0:
                    stream = await client.chat.completions.create(
                        model=chat, messages=MSG, stream=True, stream_options={"include_usage": True})  # type: ignore[arg-type]
                    async for _ in stream:
                        pass
                else:
                    r = await client.chat.completions.create(model=chat, messages=MSG)  # type: ignore[arg-type]
                    assert r.usage is not None and r.usage.prompt_tokens_details is not None
            for _ in range(3):
                await client.embeddings.create(model=embed, input=["one", "two"])
            assert await _until(lambda: _applied(db, org.id), 15) == 15
            rows = await _until_rows(db, org.id, 15)
        finally:
            await client.close()
            for w in workers:
                stop_worker(w)
            streamer.stop()
        try:
            ledger_cost = _cost(rows)
            chat_rows = [r for r in rows if r[0] == "chat.completions"]
            assert len(chat_rows) == 12 and all(r[3] == 4 and r[5] == 2 for r in chat_rows)

            app = RequestContext(api.create_app(Container(settings, role="api")), role="api")
            async with AsyncTestClient(app=app, raise_server_exceptions=False) as http:
                now = utcnow()
                r = await http.get("/v1/analytics/usage", headers={"authorization": f"Bearer {key}"}, params={
                    "start": (now - dt.timedelta(days=1)).isoformat(), "end": (now + dt.timedelta(days=1)).isoformat(),
                    "granularity": "minute", "group_by": "endpoint"})
                assert r.status_code == 200, r.text
                data = r.json()["data"]
                assert sum(x["requests"] for x in data) == len(rows) == 15
                assert sum(x["prompt_tokens"] for x in data) == sum(r[2] for r in rows)
                assert sum(x["cached_prompt_tokens"] for x in data) == sum(r[3] for r in rows)
                assert sum(x["completion_tokens"] for x in data) == sum(r[4] for r in rows)
                assert sum(x["reasoning_tokens"] for x in data) == sum(r[5] for r in rows)
                assert sum(Decimal(x["cost_usd"]) for x in data) == ledger_cost
                assert sum(x["unpriced_requests"] for x in data) == 0

                # OpenAI's own client, reading OpenAI's organization APIs from aiaas.
                admin = openai.AsyncOpenAI(base_url=str(http.base_url).rstrip("/") + "/v1", api_key="unused",
                                           admin_api_key=key, http_client=http, max_retries=0)
                usage = await admin.admin.organization.usage.completions(start_time=start - 60, bucket_width="1h",
                                                                         group_by=["model"])
                results = [x for b in usage.data for x in b.results]
                assert sum(x.num_model_requests for x in results) == 12  # type: ignore[union-attr]
                assert sum(x.input_tokens for x in results) == sum(r[2] for r in chat_rows)  # type: ignore[union-attr]
                assert sum(x.input_cached_tokens or 0 for x in results) == 12 * 4  # type: ignore[union-attr]
                assert sum(x.output_tokens for x in results) == sum(r[4] for r in chat_rows)  # type: ignore[union-attr]
                assert {x.model for x in results} == {chat}  # type: ignore[union-attr]
                emb = await admin.admin.organization.usage.embeddings(start_time=start - 60, bucket_width="1h")
                assert sum(x.input_tokens for b in emb.data for x in b.results) == sum(  # type: ignore[union-attr]
                    r[2] for r in rows if r[0] == "embeddings")
                costs = await admin.admin.organization.usage.costs(start_time=start - 86400)
                value = sum(x.amount.value for b in costs.data for x in b.results)  # type: ignore[union-attr]
                assert round(Decimal(str(value)), 2) == round(ledger_cost, 2)
                assert abs(Decimal(str(value)) - ledger_cost) < Decimal("1e-9")
        finally:
            await db.dispose()


async def _until_rows(db: Database, org: str, want: int, timeout: float = 60.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    rows: list[Any] = []
    while loop.time() < deadline:
        rows = await _ledger(db, org)
        if len(rows) >= want:
            return rows
        await asyncio.sleep(0.1)
    return rows
