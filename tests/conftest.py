"""Fixtures shared by every test level.

Services are real: PostgreSQL, Redis and RabbitMQ come from ``AIAAS_TEST_DATABASE_URL``,
``AIAAS_TEST_REDIS_URL`` and ``AIAAS_TEST_AMQP_URL`` (defaulting to the standard local ports), and only
when those are unreachable and a Docker engine is present are they started with testcontainers.

Each test session creates its own database by running the migrations and drops it afterwards; its
Redis keys and broker names carry a per-session prefix, so two runs on one machine never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hyp_settings

from aiaas.kernel.config import Settings, load_settings
from support import CHILD_PREFIXES, OwnRedis, env_of

pytest_plugins = ["leakcheck", "redis_servers", "http_proxy"]

hyp_settings.register_profile("ci", max_examples=60, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture])
hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEFAULTS = {
    "database": "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    "redis": "redis://127.0.0.1:6379/0",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",  # pragma: allowlist secret
}

SESSION_ID = uuid.uuid4().hex[:10]


def _reachable(url: str) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # no engine, no socket, no permission: all mean "no docker here"
        return False
    return True


@pytest.fixture(scope="session")
def service_urls() -> Iterator[dict[str, str]]:
    """URLs of real PostgreSQL, Redis and RabbitMQ servers for this session."""
    urls = {name: os.environ.get(f"AIAAS_TEST_{name.upper()}_URL", default) for name, default in DEFAULTS.items()}
    missing = [name for name, url in urls.items() if not _reachable(url)]
    containers = []
    if missing and _docker_available():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer
        from testcontainers.redis import RedisContainer

        if "database" in missing:
            pg = PostgresContainer("postgres:16-alpine", driver="asyncpg").start()
            containers.append(pg)
            urls["database"] = pg.get_connection_url()
        if "redis" in missing:
            rd = RedisContainer("redis:7-alpine").start()
            containers.append(rd)
            urls["redis"] = f"redis://{rd.get_container_host_ip()}:{rd.get_exposed_port(6379)}/0"
        if "amqp" in missing:
            mq = RabbitMqContainer("rabbitmq:3-alpine").start()
            containers.append(mq)
            host, port = mq.get_container_host_ip(), mq.get_exposed_port(5672)
            urls["amqp"] = f"amqp://guest:guest@{host}:{port}/"  # pragma: allowlist secret
    elif missing:
        pytest.exit(f"test services unreachable and no Docker engine: {', '.join(missing)}", returncode=3)
    yield urls
    for c in containers:
        c.stop()


def _admin_dsn(database_url: str) -> str:
    u = urlsplit(database_url.replace("postgresql+asyncpg", "postgresql"))
    return u._replace(path="/postgres").geturl()


@pytest.fixture(scope="session")
def database_name() -> str:
    """The name of this session's own database."""
    return f"aiaas_test_{SESSION_ID}"


@pytest.fixture(scope="session")
def session_settings(service_urls: dict[str, str], database_name: str) -> Iterator[Settings]:
    """Settings of this session: its own migrated database, its own Redis and broker prefixes.

    For fixtures wider than one test (a streamer shared by a module, say). A test itself takes
    ``settings``, which narrows the prefixes to that test.
    """
    base = urlsplit(service_urls["database"])
    db_url = base._replace(path=f"/{database_name}").geturl()
    env = {
        "AIAAS_ENV": "test",
        "AIAAS_DATABASE_URL": db_url,
        "AIAAS_REDIS_URL": service_urls["redis"],
        "AIAAS_AMQP_URL": service_urls["amqp"],
        "AIAAS_REDIS_PREFIX": f"test-{SESSION_ID}:",
        "AIAAS_BROKER_PREFIX": f"test-{SESSION_ID}.",
        "AIAAS_LOG_JSON": "true",
        "AIAAS_READY_TIMEOUT_SECONDS": "1",
        # Every in-process test client logs in from one address; the throttle has its own tests.
        "AIAAS_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "1000000",
        # The fake upstreams listen on loopback, which the egress policy refuses outside development.
        "AIAAS_UPSTREAM_EGRESS_ALLOW": "127.0.0.0/8",
        # Most tests never call the embedded model: only the ones that do (tests/e2e/inference) load it.
        "AIAAS_LOCAL_MODEL_WARM": "false",
        # PostgreSQL allows 100 connections for everything the run starts at once (in-process apps and
        # streamers, subprocess servers, the bench smoke): the default 10 + 10 per process took it past
        # that ("too many clients") when several processes with a cold cache took requests together.
        "AIAAS_DB_POOL_SIZE": "5",
        "AIAAS_DB_MAX_OVERFLOW": "5",
    }
    settings = load_settings(env)
    from aiaas.entrypoints.migrate import migrate

    # Session fixtures may be set up inside pytest-asyncio's running loop: run blocking work in a thread.
    _in_thread(migrate, settings)
    yield settings
    _in_thread(asyncio.run, _drop_database(service_urls["database"], database_name))
    _in_thread(asyncio.run, _cleanup(settings))


_test_counter = itertools.count(1)


@pytest.fixture
def settings(session_settings: Settings) -> Iterator[Settings]:
    """The session's settings narrowed to one test: Redis keys, exchanges and queues of its own.

    Whatever the test (or a process it starts) declares or writes under its prefixes is deleted after it,
    so no test reads a message or a key another test left behind, whatever the order.
    """
    tag = f"t{next(_test_counter)}"
    own = msgspec.structs.replace(session_settings, redis_prefix=f"{session_settings.redis_prefix}{tag}:",
                                  broker_prefix=f"{session_settings.broker_prefix}{tag}.")
    yield own
    _in_thread(asyncio.run, _cleanup(own, broker=_broker_touched(own.broker_prefix)))


def _in_thread(fn: Any, *args: Any) -> Any:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


async def _drop_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(_admin_dsn(url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _cleanup(settings: Settings, *, broker: bool = True) -> None:
    await _cleanup_redis(settings)
    if broker:
        await _cleanup_broker(settings)


def _broker_touched(prefix: str) -> bool:
    from aiaas.kernel.broker import declared_names

    return prefix in CHILD_PREFIXES or any(name.startswith(prefix) for _, name in declared_names)


async def _cleanup_redis(settings: Settings) -> None:
    from redis.asyncio import Redis

    r = Redis.from_url(settings.redis_url)
    try:
        batch = [key async for key in r.scan_iter(match=f"{settings.redis_prefix}*", count=1000)]
        for i in range(0, len(batch), 500):
            await r.delete(*batch[i:i + 500])
    finally:
        await r.aclose()


def _topology(prefix: str) -> set[tuple[str, str]]:
    """Every exchange and queue the platform declares under ``prefix``, child processes' included (they
    are not in this process's ``declared_names``)."""
    from aiaas.kernel.broker import declared_names, exchange_name, queue_name
    from aiaas.kernel.config import CONTEXTS

    names = {(kind, name) for kind, name in declared_names if name.startswith(prefix)}
    for child in (p for p in CHILD_PREFIXES if p.startswith(prefix)):
        for context in CONTEXTS:
            names.add(("exchange", exchange_name(child, context)))
            for source in CONTEXTS:
                q = queue_name(child, context, source)
                names.update({("queue", q), ("queue", f"{q}.dlq"), ("exchange", f"{q}.dlx")})
    return names


async def _cleanup_broker(settings: Settings) -> None:
    """Delete every queue and exchange declared under these settings' prefix."""
    import aio_pika

    from aiaas.kernel.broker import declared_names

    prefix = settings.broker_prefix
    names = _topology(prefix)
    conn = await aio_pika.connect(settings.amqp_url)
    try:
        ch = await conn.channel()
        for kind, name in sorted(names, reverse=True):  # queues before exchanges
            if ch.is_closed:
                ch = await conn.channel()
            with contextlib.suppress(Exception):  # already gone, or never declared: nothing to clean
                if kind == "queue":
                    await ch.queue_delete(name)
                else:
                    await ch.exchange_delete(name)
        if not ch.is_closed:
            await ch.close()
    finally:
        await conn.close()
    declared_names.difference_update(n for n in list(declared_names) if n[1].startswith(prefix))
    CHILD_PREFIXES.difference_update(p for p in list(CHILD_PREFIXES) if p.startswith(prefix))


@pytest.fixture
def session_env(settings: Settings) -> dict[str, str]:
    """Environment variables for a child ``aiaas`` process of this test (its own prefixes)."""
    return env_of(settings)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A private redis-server on a free port that a test may stop and start (never the shared one)."""
    r = OwnRedis()
    r.start()
    yield r
    r.stop()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[object]:
    """A Redis client on this session's server."""
    from aiaas.kernel.redis import make_redis

    r = make_redis(settings)
    yield r
    await r.aclose()
