"""The queue consumer (role ``worker``) and its own ``/health``, ``/ready`` and ``/metrics`` app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from litestar import Litestar
from prometheus_client import Gauge

from aiaas.analytics import api as analytics_api
from aiaas.entrypoints.bootstrap import Container, bounded, cancel_bounded
from aiaas.kernel.broker import Subscription
from aiaas.kernel.config import worker_consumers
from aiaas.kernel.web import make_app
from aiaas.usage import api as usage_api

log = logging.getLogger("aiaas.worker")

CONSUMER_LAG = Gauge("aiaas_consumer_lag_messages", "Messages waiting in a consumer's queue.",
                     ["consumer", "source"], multiprocess_mode="max")


class ConsumerRuntime:
    """Starts every subscription of the container and stops them gracefully.

    Stopping cancels the consumers first (no new deliveries), then waits for the messages in hand to
    finish and be acked; anything not acked is redelivered by RabbitMQ to another worker.
    """

    def __init__(self, container: Container) -> None:
        self.container = container
        self._stops: list[Callable[[], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin consuming in the background, retrying until RabbitMQ is reachable."""
        self._task = asyncio.create_task(self._run(), name="aiaas-consumers")
        self._lag_task = asyncio.create_task(self._watch_lag(), name="aiaas-consumer-lag")

    async def _watch_lag(self, interval: float = 5.0) -> None:
        # Each probe (a passive declare on its own channel) is waited for with a bound but never cancelled:
        # cancelling aio-pika mid-RPC tears the channel down in the background, can take the connection
        # with it, and at times never returns - the worker's shutdown once hung there. A probe still
        # running at the next tick is waited for again rather than doubled.
        probes: dict[str, asyncio.Future[int]] = {}
        while True:
            for sub in self._subscriptions():
                probe = probes.get(sub.source)
                if probe is None or probe.done():
                    probe = probes[sub.source] = asyncio.ensure_future(self.container.broker.queue_depth(sub))
                done, _ = await asyncio.wait({probe}, timeout=interval)
                if not done:
                    log.debug("consumer lag of %s unknown: no answer within %.0fs", sub.source, interval)
                elif probe.exception() is not None:  # queue not declared yet or broker down: keep the last value
                    log.debug("consumer lag of %s unknown: %s", sub.source, type(probe.exception()).__name__)
                else:
                    CONSUMER_LAG.labels(sub.consumer, sub.source).set(probe.result())
            await asyncio.sleep(interval)

    def _subscriptions(self) -> list[Subscription]:
        """What this process consumes: the subscriptions ``AIAAS_WORKER_CONSUMERS`` names."""
        chosen = worker_consumers(self.container.settings)
        return [sub for sub in self.container.subscriptions() if sub.consumer in chosen]

    async def _run(self) -> None:
        delay = 0.5
        pending = self._subscriptions()
        while pending:
            sub = pending[0]
            try:
                self._stops.append(await self.container.broker.consume(sub))
            except Exception as exc:  # broker down or restarting: keep trying, /ready reports it meanwhile
                log.warning("cannot consume %s yet (%s); retrying in %.1fs", sub.source, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            log.info("consuming %s events for %s", sub.source, sub.consumer)
            pending.pop(0)
            delay = 0.5

    async def stop(self) -> None:
        """Stop consuming and let in-flight messages finish."""
        await cancel_bounded("consumer start-up", self._task)
        await cancel_bounded("consumer lag watch", self._lag_task)
        for stop in reversed(self._stops):
            # In-flight messages get up to 30 s inside stop(); anything unacked is redelivered anyway.
            await bounded("consumer", stop(), 40)
        self._stops.clear()


class PeriodicJobs:
    """Runs the container's periodic jobs (e.g. moving API-key last-used stamps into PostgreSQL)."""

    def __init__(self, container: Container) -> None:
        self.jobs = container.periodic_jobs()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start one loop per job."""
        for interval, job in self.jobs:
            self._tasks.append(asyncio.create_task(self._loop(interval, job), name=f"aiaas-job-{job.__name__}"))

    @staticmethod
    async def _loop(interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:  # a failed run is retried at the next tick
                log.warning("periodic job %s failed", job.__name__, exc_info=True)

    async def stop(self) -> None:
        """Cancel the loops, then run each job once more so nothing collected is lost."""
        for task in self._tasks:
            await cancel_bounded(f"periodic job {task.get_name()}", task)
        self._tasks.clear()
        for _, job in self.jobs:
            await bounded(f"final run of {job.__name__}", job(), 10)


class LedgerMaintenance:
    """Keeps the usage ledger's monthly partitions: this month's and the next are made at start and daily,
    and with ``AIAAS_USAGE_LEDGER_RETENTION_DAYS`` the months wholly older than it are dropped (and the
    analytics processed-event records older than it are deleted).

    Every worker runs it; the runs take turns on a PostgreSQL advisory lock and a second one finds nothing
    to do. A failed run (PostgreSQL away, the ledger's lock busy) is tried again after ``retry`` seconds.
    """

    def __init__(self, container: Container, *, interval: float = 86_400.0, retry: float = 60.0) -> None:
        self.container = container
        self.interval = interval
        self.retry = retry
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop; its first run is at once."""
        self._task = asyncio.create_task(self._loop(), name="aiaas-usage-ledger-partitions")

    async def run_once(self) -> None:
        """Create the missing partitions, then drop the expired ones (each in its own transaction)."""
        db = self.container.db
        async with db.unit_of_work("usage") as session:
            await usage_api.ensure_ledger_partitions(session)
        retention = self.container.settings.usage_ledger_retention_days
        if retention is not None:
            async with db.unit_of_work("usage") as session:
                await usage_api.drop_expired_partitions(session, retention_days=retention)
            await analytics_api.prune_processed_events(self.container.session_factory("analytics"),
                                                       retention_days=retention)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
                delay = self.interval
            except Exception:
                log.warning("ledger partition maintenance failed; retrying in %.0fs", self.retry, exc_info=True)
                delay = min(self.retry, self.interval)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Cancel the loop (a run in progress rolls back; the next start does it again)."""
        await cancel_bounded("ledger partition maintenance", self._task)
        self._task = None


def create_app(container: Container) -> Litestar:
    """The worker's HTTP app: observability only; consumers, periodic jobs and the ledger's partition
    maintenance start with it and stop with it."""
    runtime = ConsumerRuntime(container)
    jobs = PeriodicJobs(container)
    ledger = LedgerMaintenance(container)

    async def start() -> None:
        await container.start()
        await runtime.start()
        await jobs.start()
        await ledger.start()

    async def stop() -> None:
        await ledger.stop()
        await jobs.stop()
        await runtime.stop()
        await container.stop()

    return make_app(
        role="worker",
        settings=container.settings,
        route_handlers=[],
        checks=container.checks("worker"),
        title="aiaas worker",
        description="Health, readiness and metrics of the queue worker.",
        on_startup=[start],
        on_shutdown=[stop],
        state={"container": container, "consumers": runtime},
    )
