"""A Redis outage under a running streamer: each org's policy decides, /ready says so, nothing is lost.

The streamer and the worker use a redis-server of this test on a free port (killed and restarted here;
the shared Redis stays up). Keys, orgs and policies are real and stored in PostgreSQL before the outage,
so the streamer's fallbacks (principal, catalog and policy read from PostgreSQL) find them.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import httpx
import msgspec
import openai
import pytest
from redis.asyncio import Redis

from aiaas.kernel.config import Settings
from aiaas.kernel.events import utcnow
from aiaas.kernel.redis import Keys
from aiaas.usage import service as usage_service
from aiaas.usage.schemas import UsagePolicyUpdate
from e2e.usage.conftest import (
    CHAT,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    make_org,
    start_streamer,
    start_worker,
    stop_worker,
)
from fake_upstream import FakeUpstream
from support import OwnRedis

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")]

MSG = [{"role": "user", "content": "Say hello while Redis is down."}]
HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")


def sdk(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)


async def _chat(client: openai.AsyncOpenAI) -> Any:
    return await client.chat.completions.with_raw_response.create(model=CHAT, messages=MSG,  # type: ignore[arg-type]
                                                                  max_tokens=5)


async def _ready(http: httpx.AsyncClient, status: str) -> Any:
    doc: Any = None
    for _ in range(100):
        r = await http.get("/ready")
        doc = r.json()
        if r.status_code == 200 and doc.get("status") == status:
            return doc
        await asyncio.sleep(0.1)
    return doc


async def _org_used(redis_url: str, keys: Keys, org_id: str, *, used: int, timeout: float = 60.0) -> tuple[int, int]:
    redis = Redis.from_url(redis_url)
    got = (0, 0)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got = await usage_service.quota_usage(redis, keys, org_id=org_id, scope="org", ident=org_id, at=utcnow())
            if got == (used, 0):
                break
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    return got


class TestPolicyWhenRedisIsDown:
    async def test_fail_closed_refuses_fail_open_serves_and_is_counted_later(
        self, settings: Settings, session_env: dict[str, str], usage_upstream: FakeUpstream, own_redis: OwnRedis,
    ) -> None:
        s = msgspec.structs.replace(settings, redis_url=own_redis.url)
        budget = 1_000_000
        closed = make_org(s, policy=UsagePolicyUpdate(rpm_limit=100, monthly_token_budget=budget,
                                                      redis_failure_mode="closed"))
        opened = make_org(s, policy=UsagePolicyUpdate(rpm_limit=100, monthly_token_budget=budget,
                                                      redis_failure_mode="open"))
        streamer = start_streamer(s)
        root = streamer.base_url.removesuffix("/v1")
        try:
            async with httpx.AsyncClient(base_url=root, timeout=30) as http, \
                    sdk(streamer.base_url, closed.keys["member"].secret) as closed_sdk, \
                    sdk(streamer.base_url, opened.keys["member"].secret) as open_sdk:
                # Warm: both served with limits (this also fills the caches that the outage then loses).
                for client in (closed_sdk, open_sdk):
                    r = await _chat(client)
                    assert all(h in r.headers for h in HEADERS)
                assert (await _ready(http, "ok"))["checks"]["limits"] == "enforced"

                own_redis.stop()

                doc = await _ready(http, "degraded")
                assert doc["status"] == "degraded"
                assert doc["degraded"] == ["redis"]
                assert doc["checks"]["limits"].startswith("redis unavailable: not enforced")

                with pytest.raises(openai.APIStatusError) as refused:
                    await _chat(closed_sdk)
                assert refused.value.status_code == 503
                assert isinstance(refused.value, openai.InternalServerError)
                assert refused.value.code == "rate_limiter_unavailable"
                assert refused.value.response.headers["retry-after"] == "1"
                assert refused.value.response.headers["content-type"].startswith("application/problem+json")

                served = await _chat(open_sdk)
                assert served.http_response.status_code == 200
                assert served.parse().usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
                assert not any(h in served.headers for h in HEADERS)  # nothing was enforced

                own_redis.start()

                doc = await _ready(http, "ok")
                assert doc["checks"]["limits"] == "enforced"
                assert "degraded" not in doc

                # The restarted Redis is empty and no worker ran so far: from the events, the worker
                # counts every request of each org (before, during and after the outage) into its quota.
                worker = start_worker({**session_env, "AIAAS_REDIS_URL": own_redis.url})
                try:
                    for client in (closed_sdk, open_sdk):
                        r = await _chat(client)
                        assert r.http_response.status_code == 200
                        assert all(h in r.headers for h in HEADERS)
                    keys = Keys(s.redis_prefix)
                    per_request = PROMPT_TOKENS + COMPLETION_TOKENS
                    assert await _org_used(own_redis.url, keys, opened.id, used=3 * per_request) == (
                        3 * per_request, 0)
                    assert await _org_used(own_redis.url, keys, closed.id, used=2 * per_request) == (
                        2 * per_request, 0)
                finally:
                    stop_worker(worker)
        finally:
            streamer.stop()
