"""Monthly spend limits in USD against the real Redis: reserve at the maximum price, settle to the charge,
never above the limit under concurrency; unpriced requests are not charged."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from typing import Any

import pytest

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.redis import Keys, make_redis
from aiaas.kernel.security import Principal
from aiaas.usage import api as usage_api
from aiaas.usage import service
from aiaas.usage.schemas import UsagePolicy
from usage_support import completion

# $1 and $2 per million tokens: one prompt token reserves 1,000,000 pico-USD = 1,000 nano-USD.
RATE = (1_000_000, 2_000_000)


def _principal(org: str) -> Principal:
    return Principal(kind="api_key", user_id=str(uuid.uuid4()), org_id=org, key_id=str(uuid.uuid4()))


async def _admit(redis: Any, keys: Keys, org: str, policy: UsagePolicy, *, prompt: int, max_tokens: int,
                 rate: tuple[int, int] | None = RATE) -> usage_api.Admission:
    return await usage_api.admit(redis, keys, principal=_principal(org), model="m", estimated_prompt_tokens=prompt,
                                 max_tokens=max_tokens, policy=policy, spend_rate=rate)


def _reserve(prompt: int, max_tokens: int) -> int:
    return prompt * 1000 + max_tokens * 2000  # nano-USD


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_prefix)


class TestConcurrentRequestsNeverSettleAboveTheLimit:
    async def test_fifty_concurrent_requests_on_two_replicas(self, settings: Settings, keys: Keys) -> None:
        replicas = [make_redis(settings), make_redis(settings)]
        org = str(uuid.uuid4())
        limit_usd = "0.5"
        policy = UsagePolicy(org_id=org, monthly_spend_limit_usd=limit_usd)
        rng = random.Random(12)
        asks = [(rng.randint(100, 4000), rng.randint(100, 8000)) for _ in range(50)]
        now = dt.datetime.now(dt.UTC)
        try:
            results = await asyncio.gather(
                *(_admit(replicas[i % 2], keys, org, policy, prompt=p, max_tokens=m) for i, (p, m) in enumerate(asks)),
                return_exceptions=True)
            held = await service.spend_usage(replicas[0], keys, org_id=org, at=now)
            admitted = [(a, r) for a, r in zip(asks, results, strict=True) if isinstance(r, usage_api.Admission)]
            refused = [(a, r) for a, r in zip(asks, results, strict=True) if isinstance(r, TooManyRequests)]
            assert len(admitted) + len(refused) == 50 and admitted and refused
            reserved = sum(_reserve(*a) for a, _ in admitted)
            assert held == (0, reserved) and reserved <= 500_000_000
            for a, exc in refused:
                assert exc.code == "insufficient_quota" and "monthly spend limit of $0.5" in exc.detail
                assert reserved + _reserve(*a) > 500_000_000  # refused only when it truly did not fit
            # Settle each with what it really cost (at most its reservation), concurrently and twice.
            events = []
            for (p, m), adm in admitted:
                used_p, used_m = rng.randint(0, p), rng.randint(0, m)
                events.append(completion(org, prompt=used_p, completion_tokens=used_m,
                                         reservation_id=adm.reservation_id,
                                         charged_nano_usd=used_p * 1000 + used_m * 2000))
            settled = await asyncio.gather(*(service.settle(replicas[i % 2], keys, [ev, ev])
                                             for i, ev in enumerate(events)))
            assert sum(settled) == len(events)
            spent, still_held = await service.spend_usage(replicas[1], keys, org_id=org, at=now)
            assert still_held == 0
            assert spent == sum(ev.charged_nano_usd for ev in events) <= 500_000_000
        finally:
            for r in replicas:
                await r.aclose()


class TestReserveAndSettle:
    async def test_a_request_that_fits_exactly_passes_and_the_next_nano_usd_does_not(
        self, redis_client: Any, keys: Keys
    ) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_spend_limit_usd="0.000011")  # 11,000 nano-USD
        await _admit(redis_client, keys, org, policy, prompt=5, max_tokens=3)  # 5,000 + 6,000
        with pytest.raises(TooManyRequests) as exc:
            await _admit(redis_client, keys, org, policy, prompt=1, max_tokens=0, rate=(1000, 0))
        assert exc.value.code == "insufficient_quota"
        assert int(exc.value.headers["Retry-After"]) >= 1
        # A zero-cost request still passes a spent limit; so does one of a model without a price.
        await _admit(redis_client, keys, org, policy, prompt=0, max_tokens=0)
        await _admit(redis_client, keys, org, policy, prompt=10_000, max_tokens=10_000, rate=None)

    async def test_settlement_replaces_the_hold_with_the_charge_once(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_spend_limit_usd="1")
        a = await _admit(redis_client, keys, org, policy, prompt=100, max_tokens=100)
        now = dt.datetime.now(dt.UTC)
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now) == (0, 300_000)
        ev = completion(org, prompt=80, completion_tokens=20, reservation_id=a.reservation_id, charged_nano_usd=120_000)
        assert await service.settle(redis_client, keys, [ev]) == 1
        assert await service.settle(redis_client, keys, [ev]) == 0
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now) == (120_000, 0)

    async def test_an_expired_hold_is_released_and_a_late_charge_still_counts(
        self, redis_client: Any, keys: Keys, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_spend_limit_usd="0.0004")  # 400,000 nano-USD
        monkeypatch.setattr(service.admission, "RESERVATION_TTL_MS", 50)
        crashed = await _admit(redis_client, keys, org, policy, prompt=100, max_tokens=100)  # 300,000
        await asyncio.sleep(0.1)
        await _admit(redis_client, keys, org, policy, prompt=100, max_tokens=100)  # fits once the hold is gone
        now = dt.datetime.now(dt.UTC)
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now) == (0, 300_000)
        late = completion(org, reservation_id=crashed.reservation_id, charged_nano_usd=42)
        await service.settle(redis_client, keys, [late])
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now) == (42, 300_000)

    async def test_charges_count_without_a_limit_so_a_limit_set_mid_month_sees_them(
        self, redis_client: Any, keys: Keys
    ) -> None:
        org = str(uuid.uuid4())
        a = await _admit(redis_client, keys, org, UsagePolicy(org_id=org), prompt=10, max_tokens=10)
        await service.settle(redis_client, keys, [completion(org, reservation_id=a.reservation_id,
                                                             charged_nano_usd=900)])
        limited = UsagePolicy(org_id=org, monthly_spend_limit_usd="0.000001")  # 1,000 nano-USD, 900 spent
        with pytest.raises(TooManyRequests):
            await _admit(redis_client, keys, org, limited, prompt=1, max_tokens=0)  # 1,000 more
        await _admit(redis_client, keys, org, limited, prompt=0, max_tokens=0, rate=(100_000, 0))

    async def test_a_malformed_charge_cannot_break_the_hash(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        await service.settle(redis_client, keys, [completion(org, charged_nano_usd=-5),
                                                  completion(org, charged_nano_usd=10**30)])
        spent, _ = await service.spend_usage(redis_client, keys, org_id=org, at=dt.datetime.now(dt.UTC))
        assert spent == 2**53  # the negative one added nothing, the huge one was capped

    async def test_a_huge_request_is_refused_without_a_write(self, redis_client: Any, keys: Keys) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_spend_limit_usd="9000000")
        with pytest.raises(TooManyRequests):
            await _admit(redis_client, keys, org, policy, prompt=2**40, max_tokens=2**40, rate=(10**12, 10**12))
        assert await service.spend_usage(redis_client, keys, org_id=org, at=dt.datetime.now(dt.UTC)) == (0, 0)


class TestKeySpendLimit:
    async def test_a_key_limit_holds_beside_the_org_limit_and_only_for_that_key(
        self, redis_client: Any, keys: Keys
    ) -> None:
        org = str(uuid.uuid4())
        policy = UsagePolicy(org_id=org, monthly_spend_limit_usd="1")
        limited = Principal(kind="api_key", user_id=str(uuid.uuid4()), org_id=org, key_id=str(uuid.uuid4()),
                            spend_limit_nusd=50_000)
        other = _principal(org)

        async def admit(p: Principal) -> usage_api.Admission:
            return await usage_api.admit(redis_client, keys, principal=p, model="m", estimated_prompt_tokens=10,
                                         max_tokens=10, policy=policy, spend_rate=RATE)  # 30,000 nano-USD

        first = await admit(limited)
        with pytest.raises(TooManyRequests) as exc:
            await admit(limited)  # 60,000 > 50,000
        assert exc.value.code == "insufficient_quota"
        assert "API key's monthly spend limit of $0.00005" in exc.value.detail
        await admit(other)  # the org's limit has room, and the other key has no limit of its own
        now = dt.datetime.now(dt.UTC)
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now, key_id=limited.key_id) == (0, 30_000)
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now) == (0, 60_000)
        await service.settle(redis_client, keys, [completion(org, key_id=limited.key_id,
                                                             reservation_id=first.reservation_id,
                                                             charged_nano_usd=20_000)])
        assert await service.spend_usage(redis_client, keys, org_id=org, at=now, key_id=limited.key_id) == (20_000, 0)
        await admit(limited)  # 20,000 + 30,000 = the limit exactly
        with pytest.raises(TooManyRequests):
            await admit(limited)
