"""Redis: one client per process, and key names that start with the owning context.

``key("usage", "rpm", key_id)`` gives ``{prefix}usage:rpm:{key_id}``; the prefix is empty in
production and unique per test session, so concurrent test runs never see each other's keys.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiaas.kernel.config import CONTEXTS, Settings

RedisUnavailable = (RedisConnectionError, RedisTimeoutError, OSError)


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


def make_redis(settings: Settings) -> Redis:
    """A pooled client with short timeouts, so a Redis outage fails fast instead of hanging requests."""
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=1),
        decode_responses=False,
        max_connections=256,
    )


class LuaScript:
    """A Lua script run by its SHA-1 (``EVALSHA``), loaded with ``EVAL`` the first time a server lacks it.

    ``EVAL`` would send the whole source on every call and have Redis hash it again; on the inference
    hot path that is kilobytes per request.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, redis: Any, keys: list[str], *args: Any) -> Any:
        """Run the script on ``redis`` (redis-py, or the hot path's pipelined client) with ``keys`` and ``args``."""
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:  # a restarted or new server: EVAL loads the script into its cache
            return await redis.eval(self.source, len(keys), *keys, *args)  # type: ignore[misc]
