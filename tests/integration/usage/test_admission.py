"""Admission against the real Redis: exact limits across replicas, quota reservations, settlement."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import uuid
from typing import Any

import pytest

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.redis import Keys, make_redis
from aiaas.kernel.security import Principal
from aiaas.usage import api as usage_api
from aiaas.usage import limiter, service
from aiaas.usage.schemas import UsagePolicy
from usage_support import completion

DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


def _principal(org: str, **kw: Any) -> Principal:
    return Principal(kind="api_key", user_id=str(uuid.uuid4()), org_id=org, key_id=str(uuid.uuid4()), **kw)


async def _admit(redis: Any, keys: Keys, principal: Principal, policy: UsagePolicy, *, prompt: int = 10,
                 max_tokens: int | None = 10) -> usage_api.Admission:
    return await usage_api.admit(redis, keys, principal=principal, model="m", estimated_prompt_tokens=prompt,
                                 max_tokens=max_tokens, policy=policy)


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_prefix)


class TestHeaders:
    async def test_admission_carries_openai_ratelimit_headers(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        p = _principal(org, rpm_limit=5, tpm_limit=1000)
        a = await _admit(redis_client, keys, p, UsagePolicy(org_id=org), prompt=30, max_tokens=20)
        h = a.headers
        assert h["x-ratelimit-limit-requests"] == "5"
        assert h["x-ratelimit-remaining-requests"] == "4"
        assert h["x-ratelimit-limit-tokens"] == "1000"
        assert h["x-ratelimit-remaining-tokens"] == "950"
        assert DURATION.match(h["x-ratelimit-reset-requests"]) and DURATION.match(h["x-ratelimit-reset-tokens"])
        assert a.reservation_id is not None and a.enforced

    async def test_no_limits_no_rate_headers(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        a = await _admit(redis_client, keys, _principal(org), UsagePolicy(org_id=org))
        assert a.headers == {}

    async def test_most_restrictive_scope_is_reported(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        a = await _admit(redis_client, keys, _principal(org, rpm_limit=100), UsagePolicy(org_id=org, rpm_limit=3))
        assert a.headers["x-ratelimit-limit-requests"] == "3"
        assert a.headers["x-ratelimit-remaining-requests"] == "2"


class TestExactAcrossReplicas:
    async def test_key_limited_to_l_admits_exactly_l_of_3l(self, settings: Settings, keys: Keys) -> None:
        # Two "streamer instances": two independent Redis clients (pools) sharing one Redis.
        replicas = [make_redis(settings), make_redis(settings)]
        org = str(uuid.uuid4())
        limit = 10
        p = _principal(org, rpm_limit=limit)
        policy = UsagePolicy(org_id=org)
        try:
            results = await asyncio.gather(
                *(_admit(replicas[i % 2], keys, p, policy) for i in range(3 * limit)), return_exceptions=True)
        finally:
            for r in replicas:
                await r.aclose()
        ok = [r for r in results if isinstance(r, usage_api.Admission)]
        refused = [r for r in results if isinstance(r, TooManyRequests)]
        assert len(ok) == limit
        assert len(refused) == 2 * limit
        for exc in refused:
            assert exc.code == "rate_limit_exceeded"
            assert int(exc.headers["Retry-After"]) >= 1
            assert exc.headers["x-ratelimit-remaining-requests"] == "0"

    async def test_org_limit_holds_across_keys(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, rpm_limit=7)
        results = await asyncio.gather(*(_admit(redis_client, keys, _principal(org), policy) for _ in range(20)),
                                       return_exceptions=True)
        assert sum(isinstance(r, usage_api.Admission) for r in results) == 7

    async def test_tpm_counts_estimated_tokens(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        p = _principal(org, tpm_limit=100)
        policy = UsagePolicy(org_id=org)
        await _admit(redis_client, keys, p, policy, prompt=40, max_tokens=20)
        with pytest.raises(TooManyRequests) as exc:
            await _admit(redis_client, keys, p, policy, prompt=40, max_tokens=20)
        assert exc.value.code == "rate_limit_exceeded"
        assert "tokens" in exc.value.detail

    async def test_request_larger_than_tpm_is_refused_with_reason(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        with pytest.raises(TooManyRequests) as exc:
            await _admit(redis_client, keys, _principal(org, tpm_limit=50), UsagePolicy(org_id=org), max_tokens=100)
        assert exc.value.param == "max_tokens"


class TestQuota:
    async def test_concurrent_requests_never_reserve_beyond_budget(self, settings: Settings, keys: Keys) -> None:
        replicas = [make_redis(settings), make_redis(settings)]
        org = str(uuid.uuid4())
        budget = 10_000
        policy = UsagePolicy(org_id=org, monthly_token_budget=budget)
        rng = random.Random(7)
        costs = [(rng.randint(50, 400), rng.randint(50, 300)) for _ in range(50)]
        try:
            results = await asyncio.gather(
                *(_admit(replicas[i % 2], keys, _principal(org), policy, prompt=c[0], max_tokens=c[1])
                  for i, c in enumerate(costs)), return_exceptions=True)
            used, reserved = await service.quota_usage(replicas[0], keys, org_id=org, scope="org", ident=org,
                                                       at=dt.datetime.now(dt.UTC))
        finally:
            for r in replicas:
                await r.aclose()
        accepted = sum(sum(c) for c, r in zip(costs, results, strict=True) if isinstance(r, usage_api.Admission))
        refused = [c for c, r in zip(costs, results, strict=True) if isinstance(r, TooManyRequests)]
        assert accepted <= budget
        assert (used, reserved) == (0, accepted)
        assert refused, "the budget should run out"
        for c, r in zip(costs, results, strict=True):
            if isinstance(r, TooManyRequests):
                assert r.code == "insufficient_quota"
                assert accepted + sum(c) > budget  # refused only when it truly did not fit

    async def test_settlement_replaces_reservation_with_actual_once(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        p = _principal(org, tpm_limit=1000)
        policy = UsagePolicy(org_id=org, monthly_token_budget=1000)
        a = await _admit(redis_client, keys, p, policy, prompt=100, max_tokens=400)
        ev = completion(org, prompt=90, completion_tokens=30, key_id=p.key_id, reservation_id=a.reservation_id)
        assert await service.settle(redis_client, keys, [ev]) == 1
        assert await service.settle(redis_client, keys, [ev, ev]) == 0  # redelivered: nothing changes
        now = dt.datetime.now(dt.UTC)
        assert await service.quota_usage(redis_client, keys, org_id=org, scope="org", ident=org, at=now) == (120, 0)
        # TPM corrected to the real count: 1000 - 120 left, minus this request's 20.
        b = await _admit(redis_client, keys, p, policy, prompt=10, max_tokens=10)
        assert b.headers["x-ratelimit-remaining-tokens"] == str(1000 - 120 - 20)

    async def test_a_large_batch_of_several_keys_settles_in_groups_each_event_once(
        self, redis_client: Any, keys: Keys
    ) -> None:
        # Events sharing an org, a key and a month settle in one call (split past about 100 events); a batch
        # mixes groups, an event without a key, and a duplicate, and each event still counts once.
        org = str(uuid.uuid4())
        a, b = _principal(org), _principal(org)
        policy = UsagePolicy(org_id=org, monthly_token_budget=10**9)
        events = []
        for i in range(230):
            p = a if i % 3 else b
            adm = await _admit(redis_client, keys, p, policy, prompt=10, max_tokens=10)
            events.append(completion(org, prompt=5 + i % 7, completion_tokens=1, key_id=p.key_id,
                                     reservation_id=adm.reservation_id))
        events.append(completion(org, prompt=3, completion_tokens=0, key_id=None))
        assert await service.settle(redis_client, keys, [*events, events[0]]) == len(events)
        assert await service.settle(redis_client, keys, events) == 0
        now = dt.datetime.now(dt.UTC)
        total = sum(e.total_tokens for e in events)
        assert await service.quota_usage(redis_client, keys, org_id=org, scope="org", ident=org, at=now) == (total, 0)
        a_total = sum(e.total_tokens for e in events if e.key_id == a.key_id)
        assert await service.quota_usage(redis_client, keys, org_id=org, scope="key", ident=a.key_id or "",
                                         at=now) == (a_total, 0)

    async def test_settlement_on_a_server_that_lost_its_scripts_settles_each_event_once(
        self, redis_client: Any, keys: Keys
    ) -> None:
        # Settlement runs by SHA (EVALSHA) in a pipeline: a restarted Redis refuses every call with NOSCRIPT,
        # and the refused calls (all of them, none ran) must run again after the script is loaded.
        org = str(uuid.uuid4())
        p = _principal(org)
        policy = UsagePolicy(org_id=org, monthly_token_budget=10_000)
        events = []
        for prompt in (50, 60, 70):
            a = await _admit(redis_client, keys, p, policy, prompt=prompt, max_tokens=100)
            events.append(completion(org, prompt=prompt, completion_tokens=10, key_id=p.key_id,
                                     reservation_id=a.reservation_id))
        await redis_client.script_flush()
        assert await service.settle(redis_client, keys, events[:2]) == 2
        await redis_client.script_flush()
        assert await service.settle(redis_client, keys, events) == 1  # two were settled already
        now = dt.datetime.now(dt.UTC)
        assert await service.quota_usage(redis_client, keys, org_id=org, scope="org", ident=org, at=now) == (
            50 + 60 + 70 + 30, 0)

    async def test_crashed_reservation_expires_and_late_settlement_still_counts(
        self, redis_client: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_token_budget=1000)
        monkeypatch.setattr(service.admission, "RESERVATION_TTL_MS", 50)
        crashed = await _admit(redis_client, keys, _principal(org), policy, prompt=500, max_tokens=400)
        await asyncio.sleep(0.1)
        # The next admission releases the expired 900-token hold, so this one fits.
        await _admit(redis_client, keys, _principal(org), policy, prompt=500, max_tokens=400)
        now = dt.datetime.now(dt.UTC)
        assert await service.quota_usage(redis_client, keys, org_id=org, scope="org", ident=org, at=now) == (0, 900)
        late = completion(org, prompt=5, completion_tokens=5, reservation_id=crashed.reservation_id)
        await service.settle(redis_client, keys, [late])
        assert (await service.quota_usage(redis_client, keys, org_id=org, scope="org", ident=org, at=now))[0] == 10

    async def test_exhausted_budget_is_insufficient_quota(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        with pytest.raises(TooManyRequests) as exc:
            await _admit(redis_client, keys, _principal(org), UsagePolicy(org_id=org, monthly_token_budget=5))
        assert exc.value.code == "insufficient_quota"
        assert int(exc.value.headers["Retry-After"]) >= 1


class TestExpiredReservationBacklog:
    async def test_a_call_releases_at_most_one_chunk_and_the_next_calls_continue(
        self, redis_client: Any, keys: Keys
    ) -> None:
        """After a long worker outage: 1,200 reservations expired at once are released 500 per call."""
        org = str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        q, r = service.quota_keys(keys, org, "org", org, limiter.month_key(now))
        past = int(now.timestamp() * 1000) - 1000
        await redis_client.zadd(r, {f"old-{i}": past for i in range(1200)})
        await redis_client.hset(q, mapping={**{f"r:old-{i}": 10 for i in range(1200)}, "reserved": 12_000})
        policy = UsagePolicy(org_id=org, monthly_token_budget=20_000)
        p = Principal(kind="api_key", user_id=None, org_id=org, key_id=None)
        reserved = []
        for _ in range(3):
            await _admit(redis_client, keys, p, policy, prompt=10, max_tokens=10)
            reserved.append(await service.quota_usage(redis_client, keys, org_id=org, scope="org", ident=org, at=now))
        # Each call released one chunk (500, then 500, then the last 200) and reserved its own 20 tokens.
        assert [res for _, res in reserved] == [12_000 - 5_000 + 20, 12_000 - 10_000 + 40, 60]
        assert await redis_client.zcard(r) == 3
