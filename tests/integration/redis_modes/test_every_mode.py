"""Every Redis user of the platform on each deployment an operator may run: TLS (``rediss://``), a
3-master Redis Cluster, and a master found through Sentinel, each real and on loopback.

The same code path as standalone (redis-py in every mode): limits stay exact across two replicas, the quota
is never overrun, breakers, the principal cache, the login throttle and the publisher's spill stream all
work, and every multi-key script runs (a Cluster refuses one whose keys span hash slots).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aio_pika.abc import AbstractIncomingMessage

from aiaas.auth import api as auth_api
from aiaas.auth import throttle
from aiaas.inference.events import CompletionRecorded
from aiaas.inference.schemas import Deployment
from aiaas.inference.service.routing import Breakers, decode_state
from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.publisher import EventPublisher
from aiaas.kernel.redis import Keys, RedisClient, make_redis, mget
from aiaas.kernel.security import OrgRole, Principal
from aiaas.usage import api as usage_api
from aiaas.usage import service
from aiaas.usage.schemas import UsagePolicy
from support import free_port
from usage_support import completion

MODES = ["tls", "cluster", "sentinel"]


@pytest.fixture(params=MODES)
def mode_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """This test's settings on one Redis deployment (keys under the test's own prefix).

    Commands get 10 s rather than the default 2 s: on a loaded 2-core CI machine, 30 concurrent first
    commands over TLS each pay a handshake, and the bound covers connecting too.
    """
    settings = msgspec.structs.replace(settings, redis_timeout_seconds=10.0)
    if request.param == "tls":
        tls = request.getfixturevalue("tls_redis")
        return msgspec.structs.replace(settings, redis_url=tls.url_with_ca(), redis_mode="standalone")
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return msgspec.structs.replace(settings, redis_url=cluster.url, redis_mode="cluster")
    sentinel = request.getfixturevalue("redis_sentinel")
    nodes = ",".join(f"{h}:{p}" for h, p in sentinel.sentinels)
    return msgspec.structs.replace(settings, redis_url="redis://127.0.0.1/0", redis_mode="sentinel",
                                   redis_sentinels=nodes, redis_sentinel_master=sentinel.master_name)


@pytest.fixture
async def redis(mode_settings: Settings) -> AsyncIterator[RedisClient]:
    client = make_redis(mode_settings)
    yield client
    await client.aclose()


async def _all(coros: Any) -> list[Any]:
    """Run coroutines concurrently; if one fails, the others are cancelled and awaited (none outlives the
    test), then the failure is raised."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c) for c in coros]
    return [t.result() for t in tasks]


def _principal(org: str, **kw: Any) -> Principal:
    return Principal(kind="api_key", user_id=str(uuid.uuid4()), org_id=org, key_id=str(uuid.uuid4()), **kw)


class TestAdmission:
    async def test_rpm_is_exact_across_two_replicas(self, mode_settings: Settings, redis: RedisClient) -> None:
        other = make_redis(mode_settings)
        keys = Keys(mode_settings.redis_prefix)
        org, limit = str(uuid.uuid4()), 10
        p = _principal(org, rpm_limit=limit)
        policy = UsagePolicy(org_id=org)

        async def one(client: RedisClient) -> bool:
            try:
                await usage_api.admit(client, keys, principal=p, model="m", estimated_prompt_tokens=1,
                                      max_tokens=1, policy=policy)
            except TooManyRequests:
                return False
            return True

        try:
            results = await _all(one(redis if i % 2 else other) for i in range(3 * limit))
        finally:
            await other.aclose()
        assert results.count(True) == limit

    async def test_the_quota_is_never_overrun_and_settles(self, mode_settings: Settings, redis: RedisClient) -> None:
        keys = Keys(mode_settings.redis_prefix)
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_token_budget=1000)
        p = _principal(org)

        async def one() -> usage_api.Admission | None:
            try:
                return await usage_api.admit(redis, keys, principal=p, model="m", estimated_prompt_tokens=50,
                                             max_tokens=50, policy=policy)
            except TooManyRequests:
                return None

        admitted = [a for a in await _all(one() for _ in range(30)) if a is not None]
        assert len(admitted) == 10  # 10 x 100 tokens fill the budget exactly
        now = admitted[0] and __import__("datetime").datetime.now(__import__("datetime").UTC)
        assert await service.quota_usage(redis, keys, org_id=org, scope="org", ident=org, at=now) == (0, 1000)
        events = [completion(org, prompt=5, completion_tokens=5, key_id=p.key_id, reservation_id=a.reservation_id)
                  for a in admitted]
        assert await service.settle(redis, keys, events) == 10
        assert await service.quota_usage(redis, keys, org_id=org, scope="org", ident=org, at=now) == (100, 0)


class TestBreakerAndCatalogReads:
    async def test_a_failure_opens_and_the_hot_path_mget_reads_it(self, mode_settings: Settings,
                                                                   redis: RedisClient) -> None:
        keys = Keys(mode_settings.redis_prefix)
        breakers = Breakers(redis, keys, failures=1, cooldown=30)
        dep = Deployment(id=str(uuid.uuid4()), name="d", provider="openai", upstream_model="m", base_url="http://x",
                         credential_ref=None, weight=1, priority=0, connect_timeout=1.0, first_byte_timeout=1.0,
                         chunk_timeout=1.0, total_timeout=1.0, context_length=None, enabled=True)
        model = f"m-{uuid.uuid4().hex[:6]}"
        await breakers.failure(model, dep)
        # The catalog's read spans hash slots (the model's two keys, the org's policy): one MGET regardless.
        values = await mget(redis, [keys.tagged("inference", model, "model"), breakers.key(model),
                                    keys("inference", "access", str(uuid.uuid4()))])
        assert values[0] is None and values[2] is None
        assert dep.id in decode_state(values[1])


class TestPrincipalCache:
    async def test_put_get_refuse_and_drop_member(self, mode_settings: Settings, redis: RedisClient) -> None:
        cache = auth_api.PrincipalCache(redis, Keys(mode_settings.redis_prefix))
        org, user = str(uuid.uuid4()), str(uuid.uuid4())
        p = Principal(kind="api_key", user_id=user, org_id=org, key_id="k", org_role=OrgRole.MEMBER)
        await cache.put("h1", p)
        await cache.put("h2", p)
        assert await cache.get("h1") == p
        await cache.refuse("h2")
        await cache.drop_member(org, user)
        assert await cache.get("h1") is None  # dropped
        assert isinstance(await cache.get("h2"), auth_api.Refused)  # a refusal survives a role change


class TestLoginThrottle:
    async def test_attempts_are_counted_and_refused(self, mode_settings: Settings, redis: RedisClient) -> None:
        small = msgspec.structs.replace(mode_settings, login_max_failures_per_account=2,
                                        login_max_attempts_per_address=100)
        k = throttle.LoginKeys.of(Keys(small.redis_prefix), email=f"{uuid.uuid4()}@x.test", address="10.0.0.1")
        await throttle.admit_attempt(redis, k, small)
        await throttle.admit_attempt(redis, k, small)
        with pytest.raises(TooManyRequests):
            await throttle.admit_attempt(redis, k, small)
        await throttle.succeeded(redis, k)
        await throttle.admit_attempt(redis, k, small)


class TestPublisherSpill:
    async def test_events_spill_while_the_broker_is_away_and_replay_in_order(
        self, mode_settings: Settings, redis: RedisClient,
    ) -> None:
        keys = Keys(mode_settings.redis_prefix)
        unreachable = msgspec.structs.replace(mode_settings, amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/")
        dead = Broker(unreachable)
        publisher = EventPublisher(dead, redis=redis, keys=keys, publish_timeout=0.3, replay_interval=0.1)
        org = str(uuid.uuid4())
        events = [completion(org) for _ in range(5)]
        try:
            for ev in events:
                publisher.emit("inference", ev)
            await publisher.flush(timeout=20)
            spilled = await redis.xlen(keys("inference", "events", "spill"))
            assert spilled == 5
        finally:
            await publisher.close()
            await dead.close()
        # The next process (broker back) replays the stream in order.
        broker = Broker(mode_settings)
        got: list[str] = []

        async def handler(msg: AbstractIncomingMessage) -> None:
            got.append(msgspec.json.decode(msg.body, type=CompletionRecorded).event_id)

        stop = await broker.consume(Subscription(consumer="analytics", source="inference",
                                                 routing_keys=[CompletionRecorded.routing_key], handler=handler))
        replayer = EventPublisher(broker, redis=redis, keys=keys, replay_interval=0.1)
        try:
            await replayer.start(["inference"])
            assert await replayer.drain_spill(timeout=30)
            for _ in range(200):
                if len(got) >= 5:
                    break
                await asyncio.sleep(0.05)
        finally:
            await stop()
            await replayer.close()
            await broker.close()
        assert got == [e.event_id for e in events]
