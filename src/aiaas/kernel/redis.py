"""Redis: one client per process (redis-py with hiredis, in every mode), and key names that start with the
owning context.

``AIAAS_REDIS_MODE`` picks how the process reaches Redis, through redis-py's own clients:

- ``standalone``: ``redis://`` or ``rediss://`` (TLS; ``?ssl_ca_certs=…`` names a CA bundle);
- ``sentinel``: the master named ``AIAAS_REDIS_SENTINEL_MASTER`` found through the sentinels of
  ``AIAAS_REDIS_SENTINELS`` (``host:port,…``); password, database and TLS come from ``AIAAS_REDIS_URL``;
- ``cluster``: a Redis Cluster reached from any node of ``AIAAS_REDIS_URL``.

Key names are built by :class:`Keys`: ``keys("usage", "policy", org)`` gives ``{prefix}usage:policy:{org}``.
A Redis Cluster runs a script or a multi-key command only when every key is in one hash slot, so keys
that are used together carry a hash tag (:meth:`Keys.tagged`): ``keys.tagged("usage", org, "policy")``
gives ``{prefix}usage:{<org>}:policy``, and every key of an org's admission shares the org's slot. The
prefix is empty in production and unique per test, so concurrent test runs never see each other's keys.

Scripts run one way: :class:`Script` (``EVALSHA``, loading the script when a server lacks it), on whichever
client the caller holds.

Every command and every pipeline is bounded by ``AIAAS_REDIS_TIMEOUT_SECONDS`` (a stalled server counts
as an unavailable one), by one ``asyncio.timeout`` around it rather than redis-py's ``socket_timeout``: on
Python 3.11 that option writes through ``asyncio.wait_for``, which loses a cancellation that arrives as
the write completes (so a client that left, or a server shutting down, could not stop a request), and
its timers cost about 30 µs of CPU per command on the hot path.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiaas.kernel.config import CONTEXTS, Settings

# What "Redis cannot be reached now" looks like in every mode (a sentinel that finds no master raises a
# ConnectionError): callers degrade or refuse on these.
RedisUnavailable = (RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError, MasterDownError,
                    SlotNotCoveredError, OSError)

if TYPE_CHECKING:
    RedisClient = Redis | RedisCluster
else:  # Litestar resolves handler annotations at run time, and takes no union of two classes there
    RedisClient = Any
RedisMode = Literal["standalone", "sentinel", "cluster"]


class Keys:
    """Builds Redis key names under the configured prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, context: str, *parts: object) -> str:
        if context not in CONTEXTS:
            raise ValueError(f"unknown context {context!r}")
        if not parts:
            return self.prefix + context
        return self.prefix + context + ":" + ":".join(map(str, parts))

    def tagged(self, context: str, tag: object, *parts: object) -> str:
        """A key in ``tag``'s hash slot: keys a script or ``MGET`` uses together share a tag."""
        text = str(tag)
        if "{" in text or "}" in text:
            raise ValueError("a hash tag cannot contain braces")
        return self(context, "{" + text + "}", *parts)


def _options() -> dict[str, Any]:
    # No socket_timeout (see the module's docstring: the bound is the command's deadline); a short connect
    # timeout so an outage fails fast, and one retry on a new connection smooths over a blip (a server that
    # closed an idle connection, a failover).
    return {"socket_timeout": None, "socket_connect_timeout": 1.0, "decode_responses": False,
            "retry": Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=1)}


class _Bounded:
    """Runs ``awaitable`` under the client's deadline; a stall is a :class:`RedisTimeoutError`."""

    timeout_seconds: float = 2.0

    async def _bounded(self, awaitable: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await awaitable
        except TimeoutError:
            raise RedisTimeoutError(f"Redis did not answer within {self.timeout_seconds:g}s "
                                    "(AIAAS_REDIS_TIMEOUT_SECONDS)") from None


class _Pipeline(_Bounded, Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await self._bounded(super().execute(raise_on_error))  # type: ignore[no-any-return]


class _Redis(_Bounded, Redis):
    """redis-py's client (standalone, or a sentinel's master), each command and pipeline bounded."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await self._bounded(super().execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.timeout_seconds = self.timeout_seconds
        return pipe


class _ClusterPipeline(_Bounded, ClusterPipeline):
    async def execute(self, *args: Any, **kwargs: Any) -> list[Any]:
        return await self._bounded(super().execute(*args, **kwargs))  # type: ignore[no-any-return]


class _Cluster(_Bounded, RedisCluster):
    """redis-py's cluster client, each command and pipeline bounded, initialized before its first command.

    redis-py 8.1 fails commands issued concurrently on a client that has not discovered the cluster yet
    (``'NoneType' object has no attribute 'writelines'`` from a connection still being set up); the first
    requests of a starting streamer are exactly that. Waiting for the (locked) initialization before any
    command starts removes the race.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(self._initialized_then(*args, **kwargs))

    async def _initialized_then(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        pipe = _ClusterPipeline(self, transaction)
        pipe.timeout_seconds = self.timeout_seconds
        return pipe


def make_redis(settings: Settings) -> RedisClient:
    """The process's Redis client for ``AIAAS_REDIS_MODE`` (see the module's docstring)."""
    mode = settings.redis_mode
    client: _Redis | _Cluster
    size = settings.redis_max_connections
    if mode == "cluster":
        client = _Cluster.from_url(settings.redis_url, **_options(), max_connections=size)
    elif mode == "sentinel":
        sentinels = [_host_port(s) for s in settings.redis_sentinels.split(",") if s.strip()]
        master = Redis.from_url(settings.redis_url, **_options())
        kwargs = master.connection_pool.connection_kwargs
        opts = {k: v for k, v in kwargs.items() if k in ("password", "username", "db", "ssl", "ssl_ca_certs",
                                                           "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")}
        sentinel = Sentinel(sentinels, sentinel_kwargs={"socket_timeout": 1.0}, **_options(), **opts)
        client = sentinel.master_for(settings.redis_sentinel_master, redis_class=_Redis, max_connections=size)
    else:
        # A blocking pool: under a burst past the pool (the soak's streamer at 500 requests/s held 256
        # connections) a command waits for a connection, bounded by its deadline like any stall, where
        # redis-py's default pool fails it at once with MaxConnectionsError. No pool timeout of its own
        # (None): the command's deadline is the one bound.
        pool = BlockingConnectionPool.from_url(settings.redis_url, **_options(), max_connections=size, timeout=None)
        client = _Redis.from_pool(pool)  # as from_url does, with this pool (closed with the client)
    client.timeout_seconds = settings.redis_timeout_seconds
    return client


async def mget(redis: RedisClient, keys: list[str]) -> list[bytes | None]:
    """``MGET`` of keys that may sit in different hash slots: one command on a standalone server; on a
    Cluster, redis-py splits it by slot and sends the parts to their nodes concurrently."""
    if isinstance(redis, RedisCluster):
        return await redis.mget_nonatomic(keys)  # type: ignore[no-any-return]
    return await redis.mget(keys)  # type: ignore[no-any-return]


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host.strip("[]"), int(port)


def script(source: str) -> Script:
    """A Lua script for :class:`Script` (the one way scripts run here)."""
    return Script(source)


class Script:
    """A Lua script run by its SHA-1 (``EVALSHA``) on any client, loaded (``SCRIPT LOAD``) on a server that
    lacks it: a restarted Redis, a new cluster node. Sending the whole source (``EVAL``) on every call would
    cost kilobytes per request on the hot path. redis-py's ``register_script`` does the same but binds the
    script to one client; this runs on whichever client the caller holds (pooled, cluster or sentinel)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, redis: RedisClient, keys: list[str], *args: Any) -> Any:
        """Run on ``redis`` with ``keys`` and ``args``."""
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            await redis.script_load(self.source)  # type: ignore[misc]
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]

    async def run_many(self, redis: RedisClient, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run once per ``(keys, args)`` of ``calls`` in one pipeline (``EVALSHA``, not the source each time);
        returns each call's result. On a server that lacks the script, it is loaded and the calls it refused
        run again (only those: none of them ran)."""
        if not calls:
            return []
        todo = list(range(len(calls)))
        results: list[Any] = [None] * len(calls)
        for attempt in (1, 2):
            pipe = redis.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                # execute_command: redis-py's cluster pipeline blocks its evalsha method, not the command.
                pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            answers = await pipe.execute(raise_on_error=False)
            refused = []
            for i, answer in zip(todo, answers, strict=True):
                if isinstance(answer, NoScriptError) and attempt == 1:
                    refused.append(i)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    results[i] = answer
            if not refused:
                break
            await redis.script_load(self.source)  # type: ignore[misc]
            todo = refused
        return results
