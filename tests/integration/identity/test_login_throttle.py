"""Login throttling against the real Redis: guesses are counted before bcrypt runs, a guesser's address is
locked out but the owner elsewhere only waits a short backoff, and an address the owner used is exempt."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from aiaas.auth import service
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.errors import TooManyRequests, Unauthenticated

from .conftest import PASSWORD, new_user


@pytest.fixture
async def own(settings: Settings) -> Container:
    """A container with small limits and this test's own keys."""
    small = msgspec.structs.replace(settings, login_max_failures_per_account=3, login_max_attempts_per_address=1000,
                                    login_failure_window_seconds=900, login_max_backoff_seconds=2)
    c = Container(small, role="api")
    yield c
    await c.stop()


async def _login(c: Container, email: str, password: str, address: str) -> str:
    async with c.db.unit_of_work("auth") as s:
        try:
            await service.login(s, c.redis, c.keys, c.settings, email=email, password=password, address=address)
        except Unauthenticated:
            return "wrong"
        except TooManyRequests as exc:
            return f"throttled:{exc.headers['Retry-After']}"
    return "ok"


class TestConcurrentGuesses:
    async def test_at_most_the_limit_reach_the_password_check(self, own: Container) -> None:
        email, _ = await new_user(own)
        results = await asyncio.gather(*(_login(own, email, "wrong password!!", "10.0.0.1") for _ in range(20)))
        # Each attempt is counted before bcrypt: three get to be wrong, the rest are refused unchecked.
        assert results.count("wrong") == 3
        assert all(r.startswith("throttled:") for r in results if r != "wrong")


class TestOwnerIsNotLockedOut:
    async def test_the_guessers_address_is_locked_but_the_owner_only_waits_a_backoff(self, own: Container) -> None:
        email, _ = await new_user(own)
        for _ in range(3):
            assert await _login(own, email, "wrong password!!", "203.0.113.7") == "wrong"
        assert (await _login(own, email, PASSWORD, "203.0.113.7")).startswith("throttled:")  # that address: locked
        # The owner, elsewhere, waits at most the backoff (2 s here), not the 15-minute window.
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (result := await _login(own, email, PASSWORD, "198.51.100.20")) != "ok":
            assert result.startswith("throttled:") and int(result.split(":")[1]) <= 2
            assert loop.time() - started < 30
            await asyncio.sleep(0.2)

    async def test_an_address_the_owner_used_skips_the_backoff(self, own: Container) -> None:
        email, _ = await new_user(own)
        home = f"192.0.2.{uuid.uuid4().int % 200 + 1}"
        assert await _login(own, email, PASSWORD, home) == "ok"
        for i in range(6):  # a guesser from several addresses keeps the account in backoff
            await _login(own, email, "wrong password!!", f"203.0.113.{i + 1}")
        assert (await _login(own, email, PASSWORD, "203.0.113.99")).startswith("throttled:")
        assert await _login(own, email, PASSWORD, home) == "ok"

    async def test_a_success_resets_the_count(self, own: Container) -> None:
        email, _ = await new_user(own)
        for _ in range(2):
            assert await _login(own, email, "wrong password!!", "10.0.0.9") == "wrong"
        assert await _login(own, email, PASSWORD, "10.0.0.9") == "ok"
        for _ in range(2):
            assert await _login(own, email, "wrong password!!", "10.0.0.9") == "wrong"
        assert await _login(own, email, PASSWORD, "10.0.0.9") == "ok"
