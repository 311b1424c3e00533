"""Rate limits, quotas and their headers through running streamers, with the official OpenAI SDK.

Two streamers (separate Containers, the same Redis) stand in for two replicas; identities are real
(users, orgs, API keys made through the identity services); only the upstream LLM is a fake.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from aiaas.kernel.config import Settings
from aiaas.kernel.events import utcnow
from aiaas.kernel.redis import Keys
from aiaas.usage import service as usage_service
from aiaas.usage.schemas import UsagePolicyUpdate
from e2e.usage.conftest import (
    CHAT,
    COMPLETION_TOKENS,
    EMBED,
    FAILING,
    PROMPT_TOKENS,
    Streamer,
    make_org,
    start_streamer,
    start_worker,
    stop_worker,
)
from fake_upstream import FakeUpstream

pytestmark = pytest.mark.e2e

MSG = [{"role": "user", "content": "Say hello to the metering tests."}]
HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
           "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


@pytest.fixture
def two_streamers(settings: Settings, usage_upstream: FakeUpstream) -> Iterator[tuple[Streamer, Streamer]]:
    """Two streamers of this test (its own Redis keys and queues), as two replicas would be."""
    a = start_streamer(settings)
    try:
        b = start_streamer(settings)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def sdk(base_url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)


async def _chat(client: openai.AsyncOpenAI, **kw: Any) -> Any:
    try:
        return await client.chat.completions.create(model=CHAT, messages=MSG, **kw)  # type: ignore[arg-type]
    except openai.RateLimitError as exc:
        return exc


class TestRateLimitAcrossReplicas:
    async def test_exactly_rpm_requests_pass_across_two_streamers(
        self, settings: Settings, two_streamers: tuple[Streamer, Streamer]
    ) -> None:
        limit = 12
        org = make_org(settings, rpm_limit=limit)
        key = org.keys["member"].secret
        clients = [sdk(s.base_url, key) for s in two_streamers]
        results = await asyncio.gather(*(_chat(clients[i % 2], max_tokens=5) for i in range(3 * limit)))
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(ok) == limit
        assert len(refused) == 2 * limit
        for exc in refused:
            assert exc.code == "rate_limit_exceeded"
            assert int(exc.response.headers["retry-after"]) >= 1
            assert exc.response.headers["x-ratelimit-limit-requests"] == str(limit)
            assert exc.response.headers["x-ratelimit-remaining-requests"] == "0"
        for c in clients:
            await c.close()


class TestQuotaThroughStreamer:
    async def test_concurrent_requests_never_reserve_more_than_the_budget(
        self, settings: Settings, two_streamers: tuple[Streamer, Streamer], redis_client: object
    ) -> None:
        max_tokens = 100
        budget = 1000
        org = make_org(settings, policy=UsagePolicyUpdate(monthly_token_budget=budget))
        key = org.keys["member"].secret
        clients = [sdk(s.base_url, key) for s in two_streamers]
        results = await asyncio.gather(*(_chat(clients[i % 2], max_tokens=max_tokens) for i in range(50)))
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(ok) + len(refused) == 50
        assert refused and all(exc.code == "insufficient_quota" for exc in refused)
        assert all(int(exc.response.headers["retry-after"]) >= 1 for exc in refused)
        # No worker runs here, so nothing is settled: what is held is exactly what admission reserved.
        used, reserved = await usage_service.quota_usage(redis_client, Keys(settings.redis_prefix),  # type: ignore[arg-type]
                                                         org_id=org.id, scope="org", ident=org.id, at=utcnow())
        assert used == 0
        assert 0 < reserved <= budget
        cost = reserved // len(ok)
        assert reserved == cost * len(ok) and cost > max_tokens
        assert len(ok) == budget // cost  # nothing admissible was refused either
        for c in clients:
            await c.close()


def _duration_ok(value: str) -> bool:
    return re.fullmatch(r"(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)", value) is not None


class TestHeadersAndSettlement:
    @pytest.fixture
    def worker(self, session_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
        proc = start_worker(session_env)
        yield proc
        stop_worker(proc)

    async def test_headers_on_every_response_and_the_reservation_settles(
        self, settings: Settings, two_streamers: tuple[Streamer, Streamer], worker: subprocess.Popen[bytes],
        redis_client: object,
    ) -> None:
        rpm, tpm = 50, 100_000
        org = make_org(settings, policy=UsagePolicyUpdate(monthly_token_budget=1_000_000), rpm_limit=rpm,
                       tpm_limit=tpm)
        key = org.keys["member"].secret
        s = two_streamers[0]
        auth = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=s.base_url, headers=auth, timeout=60) as http:
            # Non-streamed: the headers, and the estimate charged to TPM.
            r = await http.post("/chat/completions", json={"model": CHAT, "messages": MSG, "max_tokens": 50})
            assert r.status_code == 200, r.text
            assert all(h in r.headers for h in HEADERS)
            assert r.headers["x-ratelimit-limit-requests"] == str(rpm)
            assert r.headers["x-ratelimit-remaining-requests"] == str(rpm - 1)
            assert r.headers["x-ratelimit-limit-tokens"] == str(tpm)
            assert _duration_ok(r.headers["x-ratelimit-reset-requests"])
            cost = tpm - int(r.headers["x-ratelimit-remaining-tokens"])
            assert cost > 50

            # The worker settles it: TPM corrected to the real usage, the quota reservation released.
            real = PROMPT_TOKENS + COMPLETION_TOKENS
            assert await _settled(redis_client, Keys(settings.redis_prefix), org.id, used=real)

            # Streamed, after settlement: the window holds the first request's real tokens, not its estimate.
            async with http.stream("POST", "/chat/completions", json={
                    "model": CHAT, "messages": MSG, "max_tokens": 50, "stream": True}) as st:
                assert st.status_code == 200
                assert all(h in st.headers for h in HEADERS)
                assert st.headers["x-ratelimit-remaining-requests"] == str(rpm - 2)
                assert int(st.headers["x-ratelimit-remaining-tokens"]) == tpm - real - cost
                body = b"".join([chunk async for chunk in st.aiter_bytes()])
            assert body.rstrip().endswith(b"data: [DONE]")
            assert await _settled(redis_client, Keys(settings.redis_prefix), org.id, used=2 * real)

            # Embeddings and legacy completions carry them too.
            r = await http.post("/embeddings", json={"model": EMBED, "input": "abc"})
            assert r.status_code == 200, r.text
            assert all(h in r.headers for h in HEADERS)
            r = await http.post("/completions", json={"model": CHAT, "prompt": "Hi", "max_tokens": 5})
            assert r.status_code == 200, r.text
            assert all(h in r.headers for h in HEADERS)
            # An admitted request whose upstream then fails still reports the limits it was charged to.
            r = await http.post("/chat/completions", json={"model": FAILING, "messages": MSG, "max_tokens": 5})
            assert r.status_code == 502, r.text
            assert all(h in r.headers for h in HEADERS)

            ready = await http.get(s.base_url.removesuffix("/v1") + "/ready")
            assert ready.status_code == 200
            assert ready.json()["checks"]["limits"] == "enforced"


async def _settled(redis: Any, keys: Keys, org_id: str, *, used: int, timeout: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = await usage_service.quota_usage(redis, keys, org_id=org_id, scope="org", ident=org_id, at=utcnow())
        if got == (used, 0):
            return True
        await asyncio.sleep(0.05)
    return False
