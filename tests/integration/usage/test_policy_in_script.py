"""The admission script reads the org's cached policy itself: a warm admission is ONE Redis call; a cache
miss loads the policy from PostgreSQL (filling the cache) and runs the script once more."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from redis.asyncio import Redis

from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.redis import Keys, make_redis
from aiaas.kernel.security import Principal
from aiaas.usage import api as usage_api
from aiaas.usage import limiter, service
from aiaas.usage.schemas import UsagePolicy, UsagePolicyUpdate


class CountingRedis(Redis):
    """A real Redis client that remembers which commands it sent (the round trips of an admission)."""

    sent: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]).upper())
        return await super().execute_command(*args, **options)


@pytest.fixture
async def counting(settings: Settings) -> AsyncIterator[CountingRedis]:
    base = make_redis(settings)
    r = CountingRedis(connection_pool=base.connection_pool)
    r.sent = []
    yield r
    await base.aclose()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_prefix)


def _principal(org: str, **kw: Any) -> Principal:
    return Principal(kind="api_key", user_id=str(uuid.uuid4()), org_id=org, key_id=str(uuid.uuid4()), **kw)


def _no_database() -> AbstractAsyncContextManager[Any]:
    raise AssertionError("a warm policy cache must not read the database")


async def _admit(redis: Any, keys: Keys, p: Principal, store: service.PolicyStore, *, prompt: int = 10,
                 max_tokens: int | None = 10) -> usage_api.Admission:
    return await usage_api.admit(redis, keys, principal=p, model="m", estimated_prompt_tokens=prompt,
                                 max_tokens=max_tokens, policies=store)


async def _put(db: Database, org: str, **policy: Any) -> None:
    async with db.unit_of_work("usage") as s:
        await service.put_policy(s, org, UsagePolicyUpdate(**policy))


class TestWarmCacheIsOneRoundTrip:
    async def test_admission_sends_one_command_and_applies_the_cached_policy(
        self, counting: CountingRedis, keys: Keys
    ) -> None:
        org = str(uuid.uuid4())
        store = service.PolicyStore(counting, keys, _no_database)
        await store.store(UsagePolicy(org_id=org, rpm_limit=2, tpm_limit=1000))
        p = _principal(org)
        await counting.script_load(limiter.ADMIT)  # as after any earlier admission on this server
        counting.sent.clear()
        a = await _admit(counting, keys, p, store, prompt=30, max_tokens=20)
        assert counting.sent == ["EVALSHA"]
        assert a.headers["x-ratelimit-limit-requests"] == "2"
        assert a.headers["x-ratelimit-remaining-tokens"] == "950"
        await _admit(counting, keys, p, store)
        with pytest.raises(TooManyRequests) as exc:
            await _admit(counting, keys, p, store)
        assert exc.value.code == "rate_limit_exceeded"

    async def test_cached_default_max_tokens_is_reserved_and_too_large_is_refused(
        self, redis_client: Any, keys: Keys
    ) -> None:
        org = str(uuid.uuid4())
        store = service.PolicyStore(redis_client, keys, _no_database)
        await store.store(UsagePolicy(org_id=org, tpm_limit=100, default_max_tokens=200))
        with pytest.raises(TooManyRequests) as exc:
            await _admit(redis_client, keys, _principal(org), store, prompt=5, max_tokens=None)
        assert exc.value.param == "max_tokens"
        assert "205 tokens" in exc.value.detail and "org's limit is 100" in exc.value.detail
        # Nothing was charged by the refusal: a small request still gets the whole minute.
        a = await _admit(redis_client, keys, _principal(org), store, prompt=5, max_tokens=5)
        assert a.headers["x-ratelimit-remaining-tokens"] == "90"


class TestCacheMissLoadsFromDatabase:
    async def test_miss_reads_postgresql_fills_the_cache_then_is_warm(
        self, counting: CountingRedis, keys: Keys, db: Database
    ) -> None:
        org = str(uuid.uuid4())
        await _put(db, org, rpm_limit=3, monthly_token_budget=1000)
        store = service.PolicyStore(counting, keys, lambda: db.unit_of_work("usage"))
        await store.invalidate(org)
        p = _principal(org)
        counting.sent.clear()
        a = await _admit(counting, keys, p, store)
        assert a.headers["x-ratelimit-limit-requests"] == "3"
        assert counting.sent.count("SET") == 1  # the cache was filled
        assert await counting.get(service.policy_key(keys, org)) is not None
        counting.sent.clear()
        await _admit(counting, keys, p, store)
        assert len(counting.sent) == 1
        used, reserved = await service.quota_usage(counting, keys, org_id=org, scope="org", ident=org,
                                                       at=dt.datetime.now(dt.UTC))
        assert (used, reserved) == (0, 40)

    async def test_unreadable_cache_entry_is_a_miss(self, redis_client: Any, keys: Keys, db: Database) -> None:
        org = str(uuid.uuid4())
        await _put(db, org, monthly_token_budget=5)
        store = service.PolicyStore(redis_client, keys, lambda: db.unit_of_work("usage"))
        await redis_client.set(keys("usage", "policy", org), b"{not json", ex=60)
        with pytest.raises(TooManyRequests) as exc:
            await _admit(redis_client, keys, _principal(org), store)
        assert exc.value.code == "insufficient_quota"

    async def test_org_without_policy_gets_the_defaults(self, redis_client: Any, keys: Keys, db: Database) -> None:
        org = str(uuid.uuid4())
        store = service.PolicyStore(redis_client, keys, lambda: db.unit_of_work("usage"))
        a = await _admit(redis_client, keys, _principal(org), store)
        assert a.reservation_id is not None and a.headers == {}

    async def test_principal_without_org_is_admitted_on_defaults(self, redis_client: Any, keys: Keys,
                                                                 db: Database) -> None:
        store = service.PolicyStore(redis_client, keys, lambda: db.unit_of_work("usage"))
        p = Principal(kind="api_key", user_id=None, org_id=None, key_id=str(uuid.uuid4()), rpm_limit=5)
        a = await _admit(redis_client, keys, p, store)
        assert a.headers["x-ratelimit-limit-requests"] == "5"


class TestExactlyOnePolicySource:
    async def test_both_or_neither_is_a_programming_error(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        with pytest.raises(TypeError):
            await usage_api.admit(redis_client, keys, principal=_principal(org), model="m",
                                  estimated_prompt_tokens=1, max_tokens=1)


class TestScriptCache:
    async def test_a_server_without_the_script_gets_it_loaded(self, counting: CountingRedis, keys: Keys) -> None:
        org = str(uuid.uuid4())
        store = service.PolicyStore(counting, keys, _no_database)
        await store.store(UsagePolicy(org_id=org))
        await counting.script_flush()
        counting.sent.clear()
        await _admit(counting, keys, _principal(org), store)
        assert counting.sent == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]  # NOSCRIPT, load it, then by SHA again
        counting.sent.clear()
        await _admit(counting, keys, _principal(org), store)
        assert counting.sent == ["EVALSHA"]
