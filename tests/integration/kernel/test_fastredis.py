"""The hot path's pipelined Redis client against real redis-servers: replies in order under concurrency,
errors like redis-py's, and outages (refused, lost, hung) that fail fast and recover."""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiaas.kernel.config import Settings
from aiaas.kernel.fastredis import PipelinedRedis, make_hot_redis, pack
from aiaas.kernel.redis import LuaScript, RedisUnavailable
from support import OwnRedis, TcpProxy, free_port

ECHO = LuaScript("return {KEYS[1], ARGV[1]}")


@pytest.fixture
async def fast(settings: Settings) -> Any:
    client = PipelinedRedis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def _wait_port(r: OwnRedis) -> None:
    import socket
    import time

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", r.port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)


class TestCommands:
    async def test_mget_reads_what_redis_py_wrote(self, fast: PipelinedRedis, redis_client: Any) -> None:
        k = f"fast-test:{uuid.uuid4()}"
        await redis_client.set(k, b"\x00binary\r\n")
        assert await fast.mget([k, k + ":missing"]) == [b"\x00binary\r\n", None]

    async def test_scripts_by_sha_with_noscript_fallback(self, fast: PipelinedRedis) -> None:
        await fast.execute("SCRIPT", "FLUSH")
        with pytest.raises(NoScriptError):
            await fast.evalsha(ECHO.sha, 1, "k", "v")
        assert await ECHO(fast, ["k"], 42) == [b"k", b"42"]  # NOSCRIPT, then EVAL loads it
        assert await fast.evalsha(ECHO.sha, 1, "k", 1.5) == [b"k", b"1.5"]

    async def test_error_reply_raises_and_the_connection_stays_usable(self, fast: PipelinedRedis) -> None:
        with pytest.raises(ResponseError):
            await fast.execute("NOSUCHCOMMAND")
        assert await fast.execute("PING") == b"PONG"

    def test_pack_refuses_what_redis_cannot_take(self) -> None:
        assert pack(("GET", b"k", 1)) == b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\n1\r\n"
        with pytest.raises(TypeError):
            pack(("SET", "k", None))

    async def test_database_number_and_password_come_from_the_url(self, own_redis: OwnRedis) -> None:
        _wait_port(own_redis)
        setup = PipelinedRedis.from_url(own_redis.url)
        await setup.execute("CONFIG", "SET", "requirepass", "s3cret")
        await setup.aclose()
        client = PipelinedRedis.from_url(f"redis://:s3cret@127.0.0.1:{own_redis.port}/3")
        await client.execute("SET", "k", "in-db-3")
        assert await client.mget(["k"]) == [b"in-db-3"]
        other = PipelinedRedis.from_url(f"redis://:s3cret@127.0.0.1:{own_redis.port}/0")
        assert await other.mget(["k"]) == [None]
        wrong = PipelinedRedis.from_url(f"redis://:wrong@127.0.0.1:{own_redis.port}/0")
        with pytest.raises(ResponseError):
            await wrong.mget(["k"])
        for c in (client, other, wrong):
            await c.aclose()

    def test_tls_and_socket_urls_keep_redis_py(self) -> None:
        fallback: Any = object()
        assert make_hot_redis("rediss://h:6379/0", fallback=fallback) is fallback
        assert make_hot_redis("unix:///tmp/redis.sock", fallback=fallback) is fallback
        assert isinstance(make_hot_redis("redis://h:6379/0", fallback=fallback), PipelinedRedis)


class TestPipelining:
    async def test_concurrent_callers_each_get_their_own_reply(self, fast: PipelinedRedis, redis_client: Any) -> None:
        base = f"fast-test:{uuid.uuid4()}"
        await redis_client.mset({f"{base}:{i}": str(i) for i in range(300)})
        got = await asyncio.gather(*(fast.mget([f"{base}:{i}"]) for i in range(300)))
        assert got == [[str(i).encode()] for i in range(300)]

    async def test_a_cancelled_caller_does_not_shift_the_replies(self, fast: PipelinedRedis,
                                                                 redis_client: Any) -> None:
        base = f"fast-test:{uuid.uuid4()}"
        await redis_client.mset({f"{base}:a": "a", f"{base}:b": "b"})
        await fast.execute("PING")  # connected
        slow = asyncio.ensure_future(fast.execute("EVAL", "local t = redis.call('TIME') return 1", 0))
        first = asyncio.ensure_future(fast.mget([f"{base}:a"]))
        await asyncio.sleep(0)
        first.cancel()
        assert await fast.mget([f"{base}:b"]) == [b"b"]
        assert await slow == 1


class TestOutages:
    async def test_refused_is_a_connection_error(self) -> None:
        client = PipelinedRedis(port=free_port(), connect_timeout=0.5)
        with pytest.raises(RedisUnavailable):
            await client.mget(["k"])

    async def test_lost_connection_fails_pending_calls_then_reconnects(self, settings: Settings) -> None:
        proxy = TcpProxy(int(settings.redis_url.rsplit(":", 1)[1].split("/")[0]))
        await proxy.start()
        client = PipelinedRedis(port=proxy.port, timeout=2.0)
        try:
            assert await client.execute("PING") == b"PONG"
            pending = asyncio.ensure_future(client.execute("BLPOP", f"fast-test:{uuid.uuid4()}", 5))
            await asyncio.sleep(0.05)
            await proxy.cut()
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(pending, 2)
            with pytest.raises(RedisUnavailable):
                await client.execute("PING")  # proxy refuses while cut
            await proxy.restore()
            assert await client.execute("PING") == b"PONG"
        finally:
            await client.aclose()
            await proxy.close()

    async def test_hung_server_times_out_quickly_and_recovers(self, own_redis: OwnRedis) -> None:
        _wait_port(own_redis)
        client = PipelinedRedis(port=own_redis.port, timeout=0.3)
        try:
            assert await client.execute("PING") == b"PONG"
            assert own_redis.proc is not None
            own_redis.proc.send_signal(signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await asyncio.gather(client.mget(["a"]), client.mget(["b"]), return_exceptions=True)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert loop.time() - started < 1.5
            own_redis.proc.send_signal(signal.SIGCONT)
            assert await client.execute("PING") == b"PONG"
        finally:
            if own_redis.proc is not None:
                own_redis.proc.send_signal(signal.SIGCONT)
            await client.aclose()
