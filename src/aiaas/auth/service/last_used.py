"""Last-used stamps of API keys, kept off the request path (Redis, then the worker moves them)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import repository as repo
from aiaas.auth.service.common import new_id
from aiaas.kernel.db import after_commit
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable

log = logging.getLogger("aiaas.auth")

# --- Last-used stamps (off the request path) ---------------------------------------------------------

def last_used_key(keys: Keys) -> str:
    """The Redis hash of pending last-used stamps."""
    return keys.tagged("auth", "last_used")


class LastUsedRecorder:
    """Collects "key used at" stamps on the hot path and writes them to a Redis hash in the background.

    ``record`` is synchronous and does no I/O; a background task writes what accumulated about once a
    second (one HSET for many requests). The worker moves the hash into PostgreSQL (:func:`flush_last_used`).
    """

    def __init__(self, redis: RedisClient, keys: Keys, *, interval: float = 1.0) -> None:
        self._redis = redis
        self._name = last_used_key(keys)
        self._interval = interval
        self._pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, key_id: str, at: float) -> None:
        """Remember that ``key_id`` was used at ``at`` (epoch seconds); never blocks, never raises."""
        self._pending[key_id] = at
        if self._task is None or self._task.done():
            # Without a running loop (shutdown) the stamp is dropped: it is non-critical.
            with contextlib.suppress(RuntimeError):
                self._task = asyncio.get_running_loop().create_task(self._write_soon(), name="aiaas-last-used")

    async def _write_soon(self) -> None:
        await asyncio.sleep(self._interval)
        await self.flush()

    async def close(self) -> None:
        """Stop the background write and write what is pending now (at shutdown)."""
        task, self._task = self._task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    async def flush(self) -> None:
        """Write the pending stamps to Redis now."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            await self._redis.hset(self._name, mapping={k: repr(v) for k, v in pending.items()})
        except RedisUnavailable:  # Redis down: the stamps are dropped (non-critical), the outage is reported by /ready
            log.debug("key usage stamps dropped: Redis unavailable")
        except Exception as exc:  # any other Redis error: losing a last-used stamp is acceptable
            log.warning("could not record key usage (%s)", type(exc).__name__)


async def flush_last_used(session: AsyncSession, redis: RedisClient, keys: Keys) -> int:
    """Move the Redis hash of last-used stamps into ``auth.api_keys`` (run periodically by the worker)."""
    name = last_used_key(keys)
    # In the hash's slot, so RENAME works on a Redis Cluster.
    batch = keys.tagged("auth", "last_used", "flushing", new_id())
    try:
        await redis.rename(name, batch)
    except Exception as exc:  # no stamps since the last flush: RENAME of a missing key
        if "no such key" in str(exc).lower():
            return 0
        raise
    raw = await redis.hgetall(batch)
    stamps = []
    for k, v in raw.items():
        key_id = k.decode() if isinstance(k, bytes) else k
        if is_uuid(key_id):
            stamps.append((key_id, dt.datetime.fromtimestamp(float(v), dt.UTC)))
    await repo.stamp_last_used(session, stamps)

    async def cleanup() -> None:
        await redis.delete(batch)

    after_commit(session, cleanup)
    return len(stamps)
