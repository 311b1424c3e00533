"""The process's Redis client against real servers: a stalled server is an unavailable one within
``AIAAS_REDIS_TIMEOUT_SECONDS`` (commands, pipelines and scripts, standalone and on a Cluster node), and a
cancellation is never lost, whichever turn of the loop it lands on."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator

import msgspec
import pytest
import redis as sync_redis

from aiaas.kernel.config import Settings
from aiaas.kernel.redis import RedisTimeoutError, RedisUnavailable, make_redis, script
from redis_servers import RedisCluster
from support import OwnRedis

TIMEOUT = 0.3
# What "bounded" means in these tests: the deadline plus ample slack for a loaded machine (2 cores shared
# with the whole suite); without a deadline redis-py would wait on a stalled server for ever.
SLACK = 4.0
ECHO = script("return ARGV[1]")


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            sync_redis.Redis.from_url(server.url, socket_timeout=1).ping()
            break
        except sync_redis.ConnectionError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.05)
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


async def _bounded(awaitable: object) -> float:
    """Seconds until ``awaitable`` failed as Redis being unavailable (it must)."""
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError) as caught:
        await awaitable  # type: ignore[misc]
    assert isinstance(caught.value, RedisUnavailable) and "AIAAS_REDIS_TIMEOUT_SECONDS" in str(caught.value)
    return time.monotonic() - started


class TestAStalledServerIsUnavailable:
    async def test_standalone(self, settings: Settings, own_redis: OwnRedis) -> None:
        client = make_redis(msgspec.structs.replace(settings, redis_url=own_redis.url, redis_timeout_seconds=TIMEOUT))
        try:
            await client.set("k", b"v")
            assert own_redis.proc is not None
            os.kill(own_redis.proc.pid, signal.SIGSTOP)  # alive, connected, silent: what a hung server is
            try:
                assert await _bounded(client.get("k")) < TIMEOUT + SLACK
                pipe = client.pipeline(transaction=False)
                pipe.get("k")
                pipe.get("other")
                assert await _bounded(pipe.execute()) < TIMEOUT + SLACK
                assert await _bounded(ECHO(client, ["k"], "x")) < 2 * TIMEOUT + SLACK  # EVALSHA, maybe SCRIPT LOAD
            finally:
                os.kill(own_redis.proc.pid, signal.SIGCONT)
            assert await client.get("k") == b"v"  # back: the stalled connections were dropped, new ones work
            assert await ECHO(client, ["k"], "x") == b"x"
        finally:
            await client.aclose()

    async def test_a_cluster_node(self, settings: Settings, redis_cluster: RedisCluster) -> None:
        client = make_redis(msgspec.structs.replace(settings, redis_url=redis_cluster.url, redis_mode="cluster",
                                                    redis_timeout_seconds=TIMEOUT))
        key = f"{settings.redis_prefix}stall:{uuid.uuid4().hex}"
        try:
            await client.set(key, b"v", ex=60)
            port = client.get_node_from_key(key).port
            (node,) = [s for s in redis_cluster._servers if s.port == port]
            assert node.proc is not None
            os.kill(node.proc.pid, signal.SIGSTOP)
            try:
                assert await _bounded(client.get(key)) < TIMEOUT + SLACK
                pipe = client.pipeline()
                pipe.get(key)
                assert await _bounded(pipe.execute()) < TIMEOUT + SLACK
            finally:
                os.kill(node.proc.pid, signal.SIGCONT)
            assert await client.get(key) == b"v"
            await client.delete(key)
        finally:
            await client.aclose()


class TestAPoolPastItsSize:
    """More commands at once than ``AIAAS_REDIS_MAX_CONNECTIONS``: they wait for a connection (redis-py's
    default pool failed them at once with MaxConnectionsError, a 500 under a burst), bounded by the same
    deadline as any command."""

    async def test_commands_wait_for_a_connection_and_all_succeed(self, settings: Settings) -> None:
        client = make_redis(msgspec.structs.replace(settings, redis_max_connections=2))
        key = f"{settings.redis_prefix}pool:{uuid.uuid4().hex}"
        try:
            # Each holds its connection for 0.1 s; 12 of them through 2 connections.
            got = await asyncio.gather(*(client.execute_command("BLPOP", key, "0.1") for _ in range(12)))
            assert got == [None] * 12
            assert len(client.connection_pool._in_use_connections) == 0
            assert len(client.connection_pool._available_connections) <= 2
        finally:
            await client.delete(key)
            await client.aclose()

    async def test_waiting_for_a_connection_is_bounded_by_the_deadline(self, settings: Settings,
                                                                       own_redis: OwnRedis) -> None:
        client = make_redis(msgspec.structs.replace(settings, redis_url=own_redis.url, redis_timeout_seconds=TIMEOUT,
                                                    redis_max_connections=2))
        try:
            await client.set("k", b"v")
            assert own_redis.proc is not None
            os.kill(own_redis.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                got = await asyncio.gather(*(client.get("k") for _ in range(8)), return_exceptions=True)
                assert time.monotonic() - started < TIMEOUT + SLACK
                # Two waited on the stalled server, six on the pool: all the same unavailable Redis.
                assert all(isinstance(g, RedisTimeoutError) for g in got), got
            finally:
                os.kill(own_redis.proc.pid, signal.SIGCONT)
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()


class TestCancellation:
    async def test_a_cancellation_at_any_turn_of_the_loop_is_never_lost(self, settings: Settings) -> None:
        """redis-py's ``socket_timeout`` writes through ``asyncio.wait_for``, which on Python 3.11 returns the
        result and drops a cancellation that lands as the write completes; the client must not."""
        client = make_redis(settings)
        key = f"{settings.redis_prefix}cancel"
        try:
            await client.set(key, b"v", ex=60)
            lost = []
            for turns in range(60):
                for command in (lambda: client.get(key), lambda: client.pipeline(transaction=False).get(key).execute()):
                    task = asyncio.ensure_future(command())
                    for _ in range(turns):
                        await asyncio.sleep(0)
                    if task.done():
                        continue
                    task.cancel()
                    (outcome,) = await asyncio.gather(task, return_exceptions=True)
                    if not isinstance(outcome, asyncio.CancelledError):
                        lost.append((turns, outcome))
            assert lost == []
            assert await client.get(key) == b"v"
            await client.delete(key)
        finally:
            await client.aclose()
