"""The composition root: builds the engines, Redis, the broker connection, and wires events to consumers.

The web apps and the queue consumer are built from one :class:`Container`, so they share exactly one way
of reaching every dependency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import api as auth_api
from aiaas.inference.providers.client import UpstreamClient
from aiaas.inference.providers.credentials import CredentialResolver
from aiaas.inference.providers.egress import EgressPolicy, parse_entries
from aiaas.inference.providers.http import HttpUpstream
from aiaas.inference.providers.local import LocalRunner
from aiaas.inference.service.admission import Admitter
from aiaas.inference.service.catalog import CatalogCache
from aiaas.inference.service.gateway import Gateway
from aiaas.inference.service.routing import Breakers
from aiaas.inference.service.stored_responses import ResponseStore
from aiaas.kernel.broker import Broker, Subscription
from aiaas.kernel.config import ConfigError, Settings
from aiaas.kernel.db import Database
from aiaas.kernel.health import Check
from aiaas.kernel.publisher import EventPublisher
from aiaas.kernel.redis import Keys, RedisClient, make_redis
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


async def bounded(what: str, aw: Awaitable[Any], timeout: float) -> None:
    """Await ``aw`` for at most ``timeout`` seconds at shutdown; log instead of raising or hanging.

    ``asyncio.wait`` rather than ``wait_for``: it does not wait for a task that ignores cancellation.
    """
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        log.error("shutdown: %s did not finish within %.0fs; abandoned", what, timeout)
    elif task.exception() is not None:
        log.warning("shutdown: %s failed: %r", what, task.exception())


async def cancel_bounded(what: str, task: asyncio.Task[Any] | None, timeout: float = 5.0) -> None:
    """Cancel a background task at shutdown and wait for it at most ``timeout`` seconds.

    ``await task`` after ``cancel()`` never returns when the task swallows the cancellation (aio-pika's
    connection and channel setup can, if cancelled at the wrong moment); shutdown must not wait on that.
    """
    if task is None or task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.error("shutdown: %s ignored its cancellation for %.0fs; abandoned", what, timeout)


def egress_policy(settings: Settings) -> EgressPolicy:
    """The egress policy of upstream connections; a malformed setting fails the start, naming it."""
    try:
        return EgressPolicy(allow=parse_entries(settings.upstream_egress_allow),
                            deny=parse_entries(settings.upstream_egress_deny),
                            deny_internal=settings.env != "development")
    except ValueError as exc:
        raise ConfigError(f"AIAAS_UPSTREAM_EGRESS_ALLOW or _DENY is invalid: {exc}") from None


class Container:
    """Every process-wide dependency of one role, created once and closed on shutdown."""

    def __init__(self, settings: Settings, *, role: str) -> None:
        self.settings = settings
        self.role = role
        self.db = Database(settings, role=role)
        self.redis: RedisClient = make_redis(settings)
        self.keys = Keys(settings.redis_prefix)
        self.broker = Broker(settings)
        self.publisher = EventPublisher(self.broker, redis=self.redis, keys=self.keys,
                                        buffer_size=settings.event_buffer_size,
                                        envelope_size=settings.event_envelope_size,
                                        publish_timeout=settings.event_publish_timeout_seconds,
                                        linger=settings.event_linger_ms / 1000)
        self.principal_cache = auth_api.PrincipalCache(self.redis, self.keys,
                                                      ttl_seconds=settings.principal_cache_ttl_seconds)
        self.last_used = auth_api.LastUsedRecorder(self.redis, self.keys)
        self._authenticator: Any = None
        self.catalog = CatalogCache(self.redis, self.keys, self.inference_session,
                                    ttl=settings.inference_catalog_ttl_seconds)
        # Shared state in Redis: the streamer's router updates it, the api's admin route reads it.
        self.breakers = Breakers(self.redis, self.keys, failures=settings.inference_breaker_failures,
                                 cooldown=settings.inference_breaker_cooldown_seconds)
        # Inference pieces exist only in processes that serve the streamer: the upstream HTTP pool is
        # opened on startup (it needs the running loop) and the embedded model loads on first use.
        self.upstream_pool: UpstreamClient | None = None
        self.local_runner: LocalRunner | None = None
        self.gateway: Gateway | None = None
        self.responses = ResponseStore(self.inference_session, retention_days=settings.responses_retention_days)
        self.usage_policies = usage_api.PolicyStore(self.redis, self.keys, self.session_factory("usage"),
                                                    default_mode=settings.usage_redis_failure_mode)
        self._subscriptions: list[Subscription] | None = None

    @property
    def authenticator(self) -> Any:
        """Token -> principal resolution of the HTTP apps (see ``entrypoints.security``)."""
        if self._authenticator is None:
            from aiaas.entrypoints.security import PrincipalResolver

            self._authenticator = PrincipalResolver(self)
        return self._authenticator

    def periodic_jobs(self) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
        """Jobs the worker runs every so often: (interval in seconds, job)."""

        async def flush_last_used() -> None:
            async with self.db.unit_of_work("auth") as session:
                await auth_api.flush_last_used(session, self.redis, self.keys)

        async def projection_staleness() -> None:
            from aiaas.analytics.consumers import report_staleness

            await report_staleness(self.session_factory("analytics"))

        async def admission_prices() -> None:
            from aiaas.analytics import api as analytics_api

            await analytics_api.sync_admission_prices(self.session_factory("analytics"), self.inference_session,
                                                      self.catalog)

        async def stored_responses() -> None:
            from aiaas.inference import api as inference_api

            await inference_api.prune_stored_responses(self.inference_session)

        return [(self.settings.last_used_flush_seconds, flush_last_used), (5.0, projection_staleness),
                (60.0, admission_prices), (300.0, stored_responses)]

    def inference_session(self) -> Any:
        """A unit of work of the ``inference`` context (an async context manager)."""
        return self.db.unit_of_work("inference")

    def _start_inference(self) -> None:
        s = self.settings
        self.upstream_pool = UpstreamClient(pool_size=s.inference_upstream_pool_size,
                                            keepalive_seconds=s.inference_upstream_keepalive_seconds,
                                            pool_wait_seconds=s.inference_upstream_pool_wait_seconds,
                                            egress=egress_policy(s))
        if s.local_model_enabled:
            self.local_runner = LocalRunner(model_path=s.local_model_path, n_ctx=s.local_model_context,
                                            n_threads=s.local_model_threads, max_queue=s.local_model_max_queue,
                                            default_max_tokens=s.local_model_max_tokens,
                                            chat_format=s.local_model_chat_format or None,
                                            repeat_penalty=s.local_model_repeat_penalty)
            if s.local_model_warm:
                self.local_runner.warm()
        publisher = self.publisher
        credentials = CredentialResolver(directory=s.upstream_credentials_dir)
        self.gateway = Gateway(catalog=self.catalog, breakers=self.breakers,
                               http=HttpUpstream(self.upstream_pool, credentials),
                               local=self.local_runner, max_attempts=s.inference_max_attempts,
                               retry_budget=s.inference_retry_budget_seconds,
                               publish=lambda event: publisher.emit("inference", event),
                               admitter=Admitter(self.redis, self.keys, self.usage_policies))

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
        checks = {name: available[name] for name in ROLE_DEPENDENCIES[role]}
        if role in ("streamer", "all") and self.settings.local_model_enabled and self.settings.local_model_warm:
            checks["local_model"] = self._local_model_warmed
        return checks

    async def _local_model_warmed(self) -> None:
        # Not ready while the embedded model loads, so no request waits behind the load. A model that
        # failed to load does not hold the streamer back: its deployments fail, the others serve.
        runner = self.local_runner
        if runner is not None and not runner.warmed.is_set():
            raise RuntimeError("the embedded model is still loading")

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
            from aiaas.analytics.consumers import ProjectionConsumer
            from aiaas.inference.events import CompletionRecorded
            from aiaas.usage.consumers import LedgerConsumer

            ledger = LedgerConsumer(unit_of_work=self.session_factory("usage"), redis=self.redis, keys=self.keys,
                                    batch_size=self.settings.usage_ledger_batch_size,
                                    concurrency=self.settings.usage_ledger_concurrency)
            projections = ProjectionConsumer(unit_of_work=self.session_factory("analytics"),
                                             max_wait=self.settings.analytics_batch_wait_seconds)
            self._subscriptions = [
                Subscription(consumer="usage", source="inference", routing_keys=[CompletionRecorded.routing_key],
                             handler=ledger.handle, batch_handler=ledger.handle_many,
                             prefetch=self.settings.usage_consumer_prefetch),
                Subscription(consumer="analytics", source="inference",
                             routing_keys=[CompletionRecorded.routing_key], handler=projections.handle,
                             batch_handler=projections.handle_many, prefetch=self.settings.usage_consumer_prefetch),
            ]
        return self._subscriptions

    async def start(self) -> None:
        """Connect what must be connected up front (the broker connects lazily on first use)."""
        if self.role in ("streamer", "all") and self.gateway is None:
            self._start_inference()
        self.broker.declare_before_publishing(self._consumer_queues_of_what_we_publish())
        try:
            await self.broker.connect(timeout=self.settings.ready_timeout_seconds * 3)
            await self.broker.declaring_channel()
        except Exception as exc:  # the broker may be down at start; /ready reports it and publishing retries
            log.warning("RabbitMQ not reachable at start: %s", type(exc).__name__)
        await self.publisher.start(PUBLISHES.get(self.role, ()))

    def _consumer_queues_of_what_we_publish(self) -> list[Subscription]:
        """The queues that consume what this role publishes: declared as the worker would declare them.

        RabbitMQ drops a message that no queue is bound for; without this, the events of requests served
        before the first worker ever started (a fresh install, say) would be lost to metering.
        """
        published = PUBLISHES.get(self.role, ())
        if self.role == "all":
            published = tuple(c for ctxs in PUBLISHES.values() for c in ctxs)
        return [sub for sub in self.subscriptions() if sub.source in published]

    async def stop(self) -> None:
        """Flush buffered events and usage stamps, then close every connection.

        Each step is bounded: a dependency that hangs on close (a broker mid-reconnect, say) must not keep
        the process from exiting; what could not finish is logged.
        """
        grace = self.settings.graceful_shutdown_seconds
        await bounded("publisher", self.publisher.close(timeout=grace), grace + 5)
        await bounded("last-used stamps", self.last_used.close(), 5)
        if self.upstream_pool is not None:
            await bounded("upstream HTTP client", self.upstream_pool.close(), 5)
            self.upstream_pool = None
        if self.local_runner is not None:
            self.local_runner.shutdown()
            self.local_runner = None
        self.gateway = None
        await bounded("broker connection", self.broker.close(), 5)
        await bounded("redis client", self.redis.aclose(), 5)
        await bounded("database pools", self.db.dispose(), 10)

    def __repr__(self) -> str:
        return f"Container(role={self.role!r})"


def dependencies(container: Container) -> dict[str, Any]:
    """Litestar dependencies shared by every route: the container's pieces by name."""
    from litestar.di import Provide

    def _redis() -> RedisClient:
        return container.redis

    def _keys() -> Keys:
        return container.keys

    def _settings() -> Settings:
        return container.settings

    def _principal_cache() -> auth_api.PrincipalCache:
        return container.principal_cache

    return {
        "redis": Provide(_redis, use_cache=True, sync_to_thread=False),
        "keys": Provide(_keys, use_cache=True, sync_to_thread=False),
        "settings": Provide(_settings, use_cache=True, sync_to_thread=False),
        "principal_cache": Provide(_principal_cache, use_cache=True, sync_to_thread=False),
    }
