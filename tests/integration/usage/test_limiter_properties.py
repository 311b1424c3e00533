"""Property tests of the limiter and the reservation arithmetic, against the real Redis scripts.

A plain Python model says what must happen for any sequence of admissions and settlements inside one
window; the Lua scripts must agree with it on every decision and every counter, whether the admission
script reads the org's policy from its Redis cache (the hot path) or is handed it as an argument.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests
from aiaas.kernel.redis import Keys, make_redis
from aiaas.kernel.security import Principal
from aiaas.usage import service
from aiaas.usage.schemas import Admission, UsagePolicy
from usage_support import completion

ops = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.integers(0, 300), st.integers(0, 300)),
        st.tuples(st.just("settle"), st.integers(0, 40), st.integers(0, 600)),
    ),
    min_size=1, max_size=30,
)


def _no_database() -> AbstractAsyncContextManager[Any]:
    raise AssertionError("a warm policy cache must not read the database")


class TestLimiterMatchesModel:
    @given(rpm=st.integers(1, 12), tpm=st.integers(300, 3000), budget=st.integers(0, 5000), steps=ops,
           cached=st.booleans())
    def test_decisions_and_counters(self, settings: Settings, rpm: int, tpm: int, budget: int,
                                    steps: list[tuple[str, int, int]], cached: bool) -> None:
        asyncio.run(self._run(settings, rpm, tpm, budget, steps, cached))

    async def _run(self, settings: Settings, rpm: int, tpm: int, budget: int,
                   steps: list[tuple[str, int, int]], cached: bool) -> None:
        redis = make_redis(settings)
        keys = Keys(settings.redis_prefix)
        org = str(uuid.uuid4())
        p = Principal(kind="api_key", user_id=None, org_id=org, key_id=str(uuid.uuid4()), rpm_limit=rpm,
                      tpm_limit=tpm)
        policy = UsagePolicy(org_id=org, monthly_token_budget=budget)
        store = service.PolicyStore(redis, keys, _no_database)
        how: dict[str, Any] = {"policy": policy}
        if cached:  # the script reads the policy from the org's cache key
            await store.store(policy)
            how = {"policies": store}
        # The model: requests and tokens in the window, quota used and live reservations.
        count = tokens = used = 0
        live: list[tuple[str, int]] = []  # (reservation id, reserved = tpm charge)
        try:
            for op, a, b in steps:
                if op == "admit":
                    cost = a + b
                    expect = cost <= tpm and count + 1 <= rpm and tokens + cost <= tpm and \
                        used + sum(r for _, r in live) + cost <= budget
                    try:
                        adm: Any = await service.admit(redis, keys, principal=p, model="m",
                                                       estimated_prompt_tokens=a, max_tokens=b, **how)
                    except TooManyRequests as exc:
                        adm = exc
                    assert isinstance(adm, Admission) == expect, (op, a, b, count, tokens, used, live)
                    if isinstance(adm, Admission):
                        count += 1
                        tokens += cost
                        live.append((adm.reservation_id or "", cost))
                        assert adm.headers["x-ratelimit-remaining-requests"] == str(rpm - count)
                        assert adm.headers["x-ratelimit-remaining-tokens"] == str(tpm - tokens)
                elif live:
                    rid, reserved = live.pop(a % len(live))
                    actual = b
                    ev = completion(org, prompt=actual, completion_tokens=0, key_id=p.key_id, reservation_id=rid)
                    assert await service.settle(redis, keys, [ev]) == 1
                    assert await service.settle(redis, keys, [ev]) == 0
                    tokens += actual - reserved
                    used += actual
                got = await service.quota_usage(redis, keys, org_id=org, scope="org", ident=org,
                                                    at=dt.datetime.now(dt.UTC))
                assert got == (used, sum(r for _, r in live))
                if op == "admit" and isinstance(adm, Admission):
                    # What users care about: an admission never takes used + held beyond the budget.
                    assert got[0] + got[1] <= budget
        finally:
            await redis.aclose()
