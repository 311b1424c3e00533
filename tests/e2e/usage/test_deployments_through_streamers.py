"""Two streamers on each deployment shape an operator runs: a 3-master Redis Cluster, a TLS-only Redis,
and upstream traffic through an egress HTTP proxy (``tinyproxy``). On each, limits stay exact across the
two, the quota is never overrun and streams flow, through the real inference path and the ``openai``
client; through the proxy, every upstream call is seen to pass it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import msgspec
import openai
import pytest

from aiaas.kernel.config import Settings
from aiaas.usage.schemas import UsagePolicyUpdate
from e2e.usage.conftest import CHAT, Streamer, make_org, start_streamer
from fake_upstream import FakeUpstream
from http_proxy import HttpProxy

pytestmark = pytest.mark.e2e

MSG = [{"role": "user", "content": "Say hello through every deployment."}]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                   "all_proxy", "no_proxy")


@dataclass
class Deployment:
    settings: Settings
    proxy: HttpProxy | None = None
    upstream_url: str = ""

    def proxied(self) -> int:
        """How many chat calls to the upstream the proxy relayed so far (0 without a proxy)."""
        if self.proxy is None:
            return 0
        return self.proxy.requests().count(f"POST {self.upstream_url}/chat/completions")

    def assert_proxied(self, before: int, calls: int) -> None:
        if self.proxy is not None:
            assert self.proxied() - before == calls, "an upstream call went around the egress proxy"


@pytest.fixture(params=["redis-cluster", "redis-tls", "egress-proxy"])
def deployment(request: pytest.FixtureRequest, settings: Settings, usage_upstream: FakeUpstream,
               monkeypatch: pytest.MonkeyPatch) -> Deployment:
    if request.param == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return Deployment(msgspec.structs.replace(settings, redis_url=cluster.url, redis_mode="cluster"))
    if request.param == "redis-tls":
        tls = request.getfixturevalue("tls_redis")
        return Deployment(msgspec.structs.replace(settings, redis_url=tls.url_with_ca(), redis_mode="standalone"))
    proxy: HttpProxy = request.getfixturevalue("http_proxy")
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)  # what an operator sets on the streamer's container
    return Deployment(settings, proxy, usage_upstream.base_url)


@pytest.fixture
def two_streamers(deployment: Deployment) -> Iterator[tuple[Streamer, Streamer]]:
    a = start_streamer(deployment.settings)
    try:
        b = start_streamer(deployment.settings)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def _sdk(base_url: str, key: str) -> openai.AsyncOpenAI:
    # The client talks to the streamers directly: the proxy variables are the platform's, not the caller's.
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60,
                              http_client=httpx.AsyncClient(trust_env=False, timeout=60))


async def _chat(client: openai.AsyncOpenAI, **kw: object) -> object:
    try:
        return await client.chat.completions.create(model=CHAT, messages=MSG, **kw)  # type: ignore[arg-type]
    except openai.RateLimitError as exc:
        return exc


class TestThroughEveryDeployment:
    async def test_rpm_is_exact_across_two_streamers(self, deployment: Deployment,
                                                     two_streamers: tuple[Streamer, Streamer]) -> None:
        limit = 8
        org = make_org(deployment.settings, rpm_limit=limit)
        clients = [_sdk(s.base_url, org.keys["member"].secret) for s in two_streamers]
        before = deployment.proxied()
        try:
            results = await asyncio.gather(*(_chat(clients[i % 2], max_tokens=5) for i in range(3 * limit)))
        finally:
            for c in clients:
                await c.close()
        assert sum(not isinstance(r, BaseException) for r in results) == limit
        assert all(r.code == "rate_limit_exceeded" for r in results if isinstance(r, openai.RateLimitError))
        deployment.assert_proxied(before, limit)

    async def test_the_quota_is_never_overrun(self, deployment: Deployment,
                                              two_streamers: tuple[Streamer, Streamer]) -> None:
        org = make_org(deployment.settings, policy=UsagePolicyUpdate(monthly_token_budget=1000))
        clients = [_sdk(s.base_url, org.keys["member"].secret) for s in two_streamers]
        before = deployment.proxied()
        try:
            results = await asyncio.gather(*(_chat(clients[i % 2], max_tokens=100) for i in range(30)))
        finally:
            for c in clients:
                await c.close()
        ok = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert ok and refused and len(ok) + len(refused) == 30
        assert all(r.code == "insufficient_quota" for r in refused)
        deployment.assert_proxied(before, len(ok))

    async def test_a_stream_flows(self, deployment: Deployment, two_streamers: tuple[Streamer, Streamer]) -> None:
        org = make_org(deployment.settings)
        before = deployment.proxied()
        async with _sdk(two_streamers[0].base_url, org.keys["member"].secret) as client:
            stream = await client.chat.completions.create(model=CHAT, messages=MSG, stream=True,  # type: ignore[arg-type]
                                                          stream_options={"include_usage": True})
            chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from fake" and chunks[-1].usage is not None
        deployment.assert_proxied(before, 1)
