"""The queue consumer (role ``worker``) and its own ``/health``, ``/ready`` and ``/metrics`` app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from litestar import Litestar
from prometheus_client import Gauge

from aiaas.entrypoints.bootstrap import Container, bounded
from aiaas.kernel.web import make_app

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
        while True:
            for sub in self.container.subscriptions():
                try:
                    depth = await self.container.broker.queue_depth(sub)
                except Exception as exc:  # queue not declared yet or broker down: keep the last value
                    log.debug("consumer lag of %s unknown: %s", sub.source, type(exc).__name__)
                    continue
                CONSUMER_LAG.labels(sub.consumer, sub.source).set(depth)
            await asyncio.sleep(interval)

    async def _run(self) -> None:
        delay = 0.5
        pending = list(self.container.subscriptions())
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
        for task in (self._task, self._lag_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for _, job in self.jobs:
            await bounded(f"final run of {job.__name__}", job(), 10)


def create_app(container: Container) -> Litestar:
    """The worker's HTTP app: observability only; consumers and periodic jobs start with it and stop with it."""
    runtime = ConsumerRuntime(container)
    jobs = PeriodicJobs(container)

    async def start() -> None:
        await container.start()
        await runtime.start()
        await jobs.start()

    async def stop() -> None:
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
