"""The circuit breaker's shared state in the real Redis: one probe at a time, and a probe that ends frees
the way for the next one at once instead of at its lock's expiry."""

from __future__ import annotations

import time
import uuid

from aiaas.inference.schemas import Deployment
from aiaas.inference.service.routing import Breakers, decode_state, order_deployments
from aiaas.kernel.config import Settings
from aiaas.kernel.redis import Keys


def _dep() -> Deployment:
    return Deployment(id=str(uuid.uuid4()), name="d", provider="openai", upstream_model="m", base_url="http://x",
                      credential_ref=None, weight=1, priority=0, connect_timeout=1.0, first_byte_timeout=60.0,
                      chunk_timeout=60.0, total_timeout=600.0, context_length=None, enabled=True)


class TestProbe:
    async def test_one_probe_at_a_time_and_released_when_it_ends(self, settings: Settings,
                                                                   redis_client: object) -> None:
        breakers = Breakers(redis_client, Keys(settings.redis_prefix), failures=1, cooldown=0.2)  # type: ignore[arg-type]
        dep = _dep()
        assert await breakers.acquire_probe("m", dep)
        assert not await breakers.acquire_probe("m", dep)  # a second request does not probe meanwhile
        await breakers.release_probe(dep)
        # The lock's own expiry would be the 60 s first-byte timeout: released, the next probe may go now.
        assert await breakers.acquire_probe("m", dep)
        await breakers.release_probe(dep)

    async def test_failed_probe_reopens_then_half_opens_after_the_cooldown(self, settings: Settings,
                                                                          redis_client: object) -> None:
        breakers = Breakers(redis_client, Keys(settings.redis_prefix), failures=1, cooldown=0.2)  # type: ignore[arg-type]
        dep = _dep()
        await breakers.failure("m", dep)
        state = decode_state(await redis_client.get(breakers.key("m")))  # type: ignore[attr-defined]
        assert order_deployments([dep], state, now=time.time()) == []  # open
        assert order_deployments([dep], state, now=time.time() + 0.3) == [(dep, True)]  # half-open
        await breakers.success("m", dep, state)
        assert await redis_client.get(breakers.key("m")) is None  # type: ignore[attr-defined]
