"""A monthly spend limit in USD through two running streamers and a real worker, with the official OpenAI
SDK: 50 concurrent requests never settle above the limit, and what is settled is exactly the cost of
what was served. The price reaches admission the way it does in production: added to the price book,
handed to ``inference`` by the worker's sync, read from the model's catalog entry."""

from __future__ import annotations

import asyncio
import subprocess
from decimal import Decimal
from typing import Any

import openai
import pytest

from aiaas.analytics import api as analytics_api
from aiaas.analytics.schemas import PriceCreate
from aiaas.analytics.service import price_book
from aiaas.entrypoints.bootstrap import Container
from aiaas.inference.schemas import DeploymentSpec, ModelSpec
from aiaas.inference.service import catalog as catalog_service
from aiaas.kernel.config import Settings
from aiaas.kernel.events import utcnow
from aiaas.kernel.redis import Keys, RedisClient
from aiaas.usage import service as usage_service
from aiaas.usage.schemas import UsagePolicyUpdate
from e2e.inference.conftest import with_thread
from e2e.usage.conftest import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    make_org,
    start_streamer,
    start_worker,
    stop_worker,
    unique,
)
from fake_upstream import FakeUpstream

pytestmark = pytest.mark.e2e

MSG = [{"role": "user", "content": "How much may I spend?"}]
IN, OUT = Decimal(1000), Decimal(2000)  # USD per million tokens: dear, so a few requests reach the limit
CHARGE = PROMPT_TOKENS * 1_000_000 + COMPLETION_TOKENS * 2_000_000  # nano-USD per request the fake answers
LIMIT = Decimal("0.4")


async def _priced_model(settings: Settings, up: FakeUpstream, name: str) -> None:
    container = Container(settings, role="api")
    try:
        async with container.db.unit_of_work("inference") as s:
            await catalog_service.create_model(session=s, spec=ModelSpec(name=name, capabilities=["chat"], deployments=[
                DeploymentSpec(name="u", provider="openai", upstream_model="fake", base_url=up.base_url)]))
        async with container.db.unit_of_work("analytics") as s:
            await price_book.add_price(s, PriceCreate(model=name, input_per_mtok=IN, output_per_mtok=OUT))
        changed = await analytics_api.sync_admission_prices(container.session_factory("analytics"),
                                                            container.inference_session, container.catalog)
        assert name in changed
    finally:
        await container.redis.aclose()
        await container.db.dispose()


async def _chat(client: openai.AsyncOpenAI, model: str, i: int) -> Any:
    try:
        if i % 5 == 0:
            stream = await client.chat.completions.create(
                model=model, messages=MSG, max_tokens=5, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True})
            return [chunk async for chunk in stream]
        return await client.chat.completions.create(model=model, messages=MSG, max_tokens=5)  # type: ignore[arg-type]
    except openai.RateLimitError as exc:
        return exc


async def _settled(redis: RedisClient, keys: Keys, org: str, timeout: float = 60.0) -> tuple[int, int]:
    """The org's (spent, held) once nothing is held any more (the worker settled every request)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    got = (0, -1)
    while loop.time() < deadline:
        got = await usage_service.spend_usage(redis, keys, org_id=org, at=utcnow())
        if got[1] == 0:
            return got
        await asyncio.sleep(0.1)
    return got


class TestSpendLimitThroughStreamers:
    async def test_fifty_concurrent_requests_never_settle_above_the_limit(
        self, settings: Settings, session_env: dict[str, str], usage_upstream: FakeUpstream,
        redis_client: RedisClient,
    ) -> None:
        model = f"spend/chat-{unique()}"
        with_thread(_priced_model, settings, usage_upstream, model)
        org = make_org(settings, policy=UsagePolicyUpdate(monthly_spend_limit_usd=LIMIT))
        key = org.keys["member"].secret
        streamers = [start_streamer(settings), start_streamer(settings)]
        worker: subprocess.Popen[bytes] = start_worker(session_env)
        clients = [openai.AsyncOpenAI(base_url=s.base_url, api_key=key, max_retries=0, timeout=60) for s in streamers]
        try:
            results = await asyncio.gather(*(_chat(clients[i % 2], model, i) for i in range(50)))
            spent, held = await _settled(redis_client, Keys(settings.redis_prefix), org.id)
        finally:
            for c in clients:
                await c.close()
            stop_worker(worker)
            for s in streamers:
                s.stop()
        served = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(served) + len(refused) == 50
        assert refused, "the limit should run out"
        for exc in refused:
            assert exc.code == "insufficient_quota", exc
            assert "monthly spend limit of $0.4" in exc.message
            assert int(exc.response.headers["retry-after"]) >= 1
        assert held == 0
        assert spent == len(served) * CHARGE  # to the nano-USD
        assert spent <= LIMIT * 10**9

    async def test_a_key_limit_through_the_streamer_stops_that_key_only(
        self, settings: Settings, session_env: dict[str, str], usage_upstream: FakeUpstream,
        redis_client: RedisClient,
    ) -> None:
        model = f"spend/chat-{unique()}"
        with_thread(_priced_model, settings, usage_upstream, model)
        # Each key may spend $0.1 a month; the org has no limit.
        org = make_org(settings, monthly_spend_limit_usd=Decimal("0.1"))
        streamer = start_streamer(settings)
        worker: subprocess.Popen[bytes] = start_worker(session_env)
        member = openai.AsyncOpenAI(base_url=streamer.base_url, api_key=org.keys["member"].secret, max_retries=0,
                                    timeout=60)
        owner = openai.AsyncOpenAI(base_url=streamer.base_url, api_key=org.keys["owner"].secret, max_retries=0,
                                   timeout=60)
        keys = Keys(settings.redis_prefix)
        try:
            results = await asyncio.gather(*(_chat(member, model, i) for i in range(20)))
            owners = await _chat(owner, model, 1)  # another key of the same org still has its own $0.1
            await _settled(redis_client, keys, org.id)
            spent, held = await usage_service.spend_usage(redis_client, keys, org_id=org.id, at=utcnow(),
                                                          key_id=org.keys["member"].id)
        finally:
            await member.close()
            await owner.close()
            stop_worker(worker)
            streamer.stop()
        served = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert refused and len(served) + len(refused) == 20
        assert all("API key's monthly spend limit of $0.1" in exc.message for exc in refused)
        assert not isinstance(owners, BaseException)
        assert held == 0 and spent == len(served) * CHARGE <= 10**8
