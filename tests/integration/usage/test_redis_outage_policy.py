"""While Redis is down each org's policy decides: fail-closed refuses with 503, fail-open serves and the
usage is counted when the worker settles the event later. The test runs its own redis-server."""

from __future__ import annotations

import shutil
import uuid
from typing import Any

import msgspec
import pytest

from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.errors import ServiceUnavailable
from aiaas.kernel.redis import Keys, make_redis
from aiaas.kernel.security import Principal
from aiaas.usage import api as usage_api
from aiaas.usage import service
from aiaas.usage.schemas import UsagePolicy, UsagePolicyUpdate
from support import OwnRedis
from usage_support import completion

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")


class TestRedisDownPolicy:
    async def test_fail_closed_refuses_and_fail_open_serves_then_counts(
        self, settings: Settings, own_redis: OwnRedis
    ) -> None:
        s = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
        redis: Any = make_redis(s)
        keys = Keys(s.redis_prefix)
        org_open, org_closed = str(uuid.uuid4()), str(uuid.uuid4())
        p_open = Principal(kind="api_key", user_id=None, org_id=org_open, key_id=str(uuid.uuid4()), rpm_limit=5)
        p_closed = Principal(kind="api_key", user_id=None, org_id=org_closed, key_id=str(uuid.uuid4()), rpm_limit=5)
        open_policy = UsagePolicy(org_id=org_open, monthly_token_budget=1000, redis_failure_mode="open")
        closed_policy = UsagePolicy(org_id=org_closed, redis_failure_mode="closed")
        try:
            for _ in range(50):  # wait for the server to accept
                try:
                    await redis.ping()
                    break
                except Exception:  # not up yet
                    import asyncio

                    await asyncio.sleep(0.05)
            await usage_api.admit(redis, keys, principal=p_open, model="m", estimated_prompt_tokens=1,
                                  max_tokens=1, policy=open_policy)
            assert usage_api.ready_state() == {"limits": "enforced"}

            own_redis.stop()
            with pytest.raises(ServiceUnavailable) as exc:
                await usage_api.admit(redis, keys, principal=p_closed, model="m", estimated_prompt_tokens=1,
                                      max_tokens=1, policy=closed_policy)
            assert exc.value.code == "rate_limiter_unavailable"
            served = await usage_api.admit(redis, keys, principal=p_open, model="m", estimated_prompt_tokens=1,
                                           max_tokens=1, policy=open_policy)
            assert served.enforced is False and served.reservation_id is None
            assert "redis unavailable" in usage_api.ready_state()["limits"]

            own_redis.start()
            import asyncio

            for _ in range(50):
                try:
                    await redis.ping()
                    break
                except Exception:  # not up yet
                    await asyncio.sleep(0.05)
            # Count later: the uncounted request's event settles into the quota when Redis is back.
            ev = completion(org_open, prompt=40, completion_tokens=2, key_id=p_open.key_id, reservation_id=None)
            assert await service.settle(redis, keys, [ev]) == 1
            import datetime as dt

            used, _ = await service.quota_usage(redis, keys, org_id=org_open, scope="org", ident=org_open,

                                                    at=dt.datetime.now(dt.UTC))
            assert used == 42
            await usage_api.admit(redis, keys, principal=p_open, model="m", estimated_prompt_tokens=1,
                                  max_tokens=1, policy=open_policy)
            assert usage_api.ready_state() == {"limits": "enforced"}
        finally:
            await redis.aclose()


class TestRedisDownPolicyFromDatabase:
    async def test_policy_store_reads_postgresql_to_decide(self, settings: Settings, own_redis: OwnRedis,
                                                           db: Database) -> None:
        """The hot path (the script reads the cached policy) cannot read the cache while Redis is down:
        the PolicyStore falls back to PostgreSQL so each org's own failure mode still applies."""
        s = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")
        redis: Any = make_redis(s)
        keys = Keys(s.redis_prefix)
        org_open, org_closed = str(uuid.uuid4()), str(uuid.uuid4())
        async with db.unit_of_work("usage") as session:
            await service.put_policy(session, org_open, UsagePolicyUpdate(redis_failure_mode="open"))
            await service.put_policy(session, org_closed, UsagePolicyUpdate(redis_failure_mode="closed"))
        store = service.PolicyStore(redis, keys, lambda: db.unit_of_work("usage"), default_mode="closed")
        p_open = Principal(kind="api_key", user_id=None, org_id=org_open, key_id=str(uuid.uuid4()))
        p_closed = Principal(kind="api_key", user_id=None, org_id=org_closed, key_id=str(uuid.uuid4()))
        try:
            own_redis.stop()
            served = await usage_api.admit(redis, keys, principal=p_open, model="m", estimated_prompt_tokens=1,
                                           max_tokens=1, policies=store)
            assert served.enforced is False and served.reservation_id is None
            with pytest.raises(ServiceUnavailable) as exc:
                await usage_api.admit(redis, keys, principal=p_closed, model="m", estimated_prompt_tokens=1,
                                      max_tokens=1, policies=store)
            assert exc.value.code == "rate_limiter_unavailable"
        finally:
            await redis.aclose()
