"""The composition root: builds the engines, Redis, the broker connection, and wires events to consumers.

The web apps and the queue consumer are built from one :class:`Container`, so they share exactly one way
of reaching every dependency.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import Settings
from aiaas.kernel.db import Database
from aiaas.kernel.health import Check
from aiaas.kernel.publisher import EventPublisher
from aiaas.kernel.redis import Keys, make_redis
from aiaas.usage import api as usage_api

log = logging.getLogger("aiaas.bootstrap")

# The contexts whose events each role publishes: their leftover spills are replayed at start.
PUBLISHES: dict[str, tuple[str, ...]] = {"streamer": ("inference",)}

# Which dependencies each role needs to be ready.
ROLE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "api": ("postgres", "redis", "rabbitmq"),
    "streamer": ("postgres", "redis", "rabbitmq"),
    "worker": ("postgres", "redis", "rabbitmq"),
}


class Container:
    """Every process-wide dependency of one role, created once and closed on shutdown."""

    def __init__(self, settings: Settings, *, role: str) -> None:
        self.settings = settings
        self.role = role
        self.db = Database(settings, role=role)
        self.redis: Redis = make_redis(settings)
        self.keys = Keys(settings.redis_prefix)
        self.broker = Broker(settings)
        self.publisher = EventPublisher(self.broker, redis=self.redis, keys=self.keys,
                                        buffer_size=settings.event_buffer_size,
                                        publish_timeout=settings.event_publish_timeout_seconds)
        self.usage_policies = usage_api.PolicyStore(self.redis, self.keys, self.session_factory("usage"),
                                                    default_mode=settings.usage_redis_failure_mode)
        self._subscriptions: list[Subscription] | None = None

    async def _ping_redis(self) -> None:
        await self.redis.ping()

    async def _ping_broker(self) -> None:
        await self.broker.ping(timeout=self.settings.ready_timeout_seconds)

    def checks(self, role: str) -> dict[str, Check]:
        """The readiness checks of ``role``."""
        available: dict[str, Check] = {
            "postgres": self.db.ping,
            "redis": self._ping_redis,
            "rabbitmq": self._ping_broker,
        }
        return {name: available[name] for name in ROLE_DEPENDENCIES[role]}

    def session_provider(self, context: str) -> Callable[[], AsyncIterator[AsyncSession]]:
        """A Litestar dependency yielding one unit of work (transaction) of ``context`` per request."""
        db = self.db

        async def provide() -> AsyncIterator[AsyncSession]:
            async with db.unit_of_work(context) as session:
                yield session

        return provide

    def session_factory(self, context: str) -> Callable[[], AbstractAsyncContextManager[AsyncSession]]:
        """A callable opening one unit of work (transaction) of ``context``, for consumers and caches."""
        db = self.db

        def factory() -> AbstractAsyncContextManager[AsyncSession]:
            return db.unit_of_work(context)

        return factory

    def subscriptions(self) -> list[Subscription]:
        """Every event subscription the worker runs: each context's consumers, wired here."""
        if self._subscriptions is None:
            from aiaas.inference.events import CompletionRecorded
            from aiaas.usage.consumers import LedgerConsumer

            ledger = LedgerConsumer(unit_of_work=self.session_factory("usage"), redis=self.redis, keys=self.keys,
                                    batch_size=self.settings.usage_ledger_batch_size)
            self._subscriptions = [
                Subscription(consumer="usage", source="inference", routing_keys=[CompletionRecorded.routing_key],
                             handler=ledger.handle, prefetch=self.settings.usage_consumer_prefetch),
            ]
        return self._subscriptions

    async def start(self) -> None:
        """Connect what must be connected up front (the broker connects lazily on first use)."""
        try:
            await self.broker.connect(timeout=self.settings.ready_timeout_seconds * 3)
        except Exception as exc:  # the broker may be down at start; /ready reports it and publishing retries
            log.warning("RabbitMQ not reachable at start: %s", type(exc).__name__)
        await self.publisher.start(PUBLISHES.get(self.role, ()))

    async def stop(self) -> None:
        """Flush buffered events, then close every connection."""
        await self.publisher.close(timeout=self.settings.graceful_shutdown_seconds)
        await self.broker.close()
        await self.redis.aclose()
        await self.db.dispose()

    def __repr__(self) -> str:
        return f"Container(role={self.role!r})"


def dependencies(container: Container) -> dict[str, Any]:
    """Litestar dependencies shared by every route: the container's pieces by name."""
    from litestar.di import Provide

    def _redis() -> Redis:
        return container.redis

    def _keys() -> Keys:
        return container.keys

    return {
        "redis": Provide(_redis, use_cache=True, sync_to_thread=False),
        "keys": Provide(_keys, use_cache=True, sync_to_thread=False),
    }
