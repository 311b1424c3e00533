"""The Redis cache of resolved API-key principals, shared by every replica; ``auth`` owns its keys.

A warm lookup is one ``GET`` of a msgspec-encoded :class:`Principal` under the SHA-256 of the key, so the
streamer's hot path makes no database query. Entries (``auth:principal:<hash>``) are changed only here,
and are removed or replaced the moment the facts they copy change:

* revoking a key writes a *refusal* (tombstone) over its entry, so every replica refuses the key on its
  next request; cache fills use ``SET NX`` and can never overwrite a refusal with a stale principal;
* a role change or member removal drops every entry of that member in that org (an index set per
  member lists them);
* entries expire after a TTL, never later than the key itself expires.

Writes that take power away are made **before** the database commit (write-ahead): if Redis cannot take
them, the change is refused (503) and rolled back, so no API answer says "revoked" while a replica could
still accept the key. Every operation touches one key at a time (or a pipeline of such), so the cache
works the same on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from aiaas.kernel.errors import ServiceUnavailable
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable, script
from aiaas.kernel.security import Principal

log = logging.getLogger("aiaas.auth.principals")

REFUSED = b"!"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Principal)

_DELETE_UNLESS_REFUSED = script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
""")


class Refused:
    """Marker: the cache knows this token is refused (revoked or unknown)."""


REFUSAL = Refused()


class PrincipalCache:
    """Get, fill, refuse and drop cached API-key principals."""

    def __init__(self, redis: RedisClient, keys: Keys, *, ttl_seconds: int = 300,
                 refusal_seconds: int = 86_400) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self.refusal_seconds = refusal_seconds

    def key(self, token_hash: str) -> str:
        """Redis key of the entry for one token hash."""
        return self.keys("auth", "principal", token_hash)

    def _index(self, org_id: str, user_id: str) -> str:
        return self.keys("auth", "principals", org_id, user_id)

    async def get(self, token_hash: str) -> Principal | Refused | None:
        """The cached principal, :data:`REFUSAL` when the token is known bad, None on a miss (one ``GET``)."""
        raw = await self.redis.get(self.key(token_hash))
        if raw is None:
            return None
        if raw == REFUSED:
            return REFUSAL
        return _decoder.decode(raw)

    async def put(self, token_hash: str, principal: Principal, *, ttl_seconds: int | None = None) -> None:
        """Cache ``principal`` unless an entry (a refusal, say) is already there."""
        ttl = max(1, min(ttl_seconds or self.ttl_seconds, self.ttl_seconds))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key(token_hash), _encoder.encode(principal), ex=ttl, nx=True)
            if principal.org_id and principal.user_id:
                index = self._index(principal.org_id, principal.user_id)
                pipe.sadd(index, token_hash)
                pipe.expire(index, self.ttl_seconds * 2)
            await pipe.execute()

    async def refuse(self, *token_hashes: str, ttl_seconds: int | None = None) -> None:
        """Make every replica refuse these tokens (overwrites any cached principal)."""
        if not token_hashes:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for h in token_hashes:
                pipe.set(self.key(h), REFUSED, ex=ttl_seconds or self.refusal_seconds)
            await pipe.execute()

    async def expire_at(self, token_hash: str, principal: Principal, *, seconds: int) -> None:
        """Cache ``principal`` for at most ``seconds`` more (a rotated key's grace), overwriting the entry."""
        await self.redis.set(self.key(token_hash), _encoder.encode(principal), ex=max(1, seconds))

    async def drop(self, *token_hashes: str) -> None:
        """Forget cached entries, so the next request resolves them afresh."""
        if token_hashes:
            async with self.redis.pipeline(transaction=False) as pipe:
                for h in token_hashes:
                    pipe.delete(self.key(h))
                await pipe.execute()

    async def drop_member(self, org_id: str, user_id: str) -> None:
        """Forget every cached principal of ``user_id``'s keys in ``org_id`` (role changed or removed).

        Refusals stay: a revoked key must not come back because its owner's role changed.
        """
        index = self._index(org_id, user_id)
        members = await self.redis.smembers(index)
        for m in members:
            await _DELETE_UNLESS_REFUSED(self.redis, [self.key(m.decode() if isinstance(m, bytes) else str(m))],
                                         REFUSED)
        await self.redis.delete(index)


async def write_ahead(op: Awaitable[None], what: str) -> None:
    """Run a cache write that must land before the database commit; refuse the change (503) if it cannot.

    Raised inside the caller's unit of work, the 503 rolls the database change back too: nothing is
    changed, and the client may retry.
    """
    try:
        await op
    except RedisUnavailable as exc:
        raise ServiceUnavailable(f"{what} cannot be applied right now: the cache every replica reads is "
                                 "unreachable. Nothing was changed; retry shortly.", code="cache_unavailable",
                                 headers={"Retry-After": "1"}) from exc


def retrying(op: Callable[[], Awaitable[None]], what: str, *, attempts: int = 4) -> Callable[[], Awaitable[None]]:
    """A best-effort cache write for after the commit: retried with backoff, logged if it never lands."""

    async def run() -> None:
        for attempt in range(attempts):
            try:
                await op()
                return
            except RedisUnavailable as exc:
                if attempt == attempts - 1:
                    log.error("%s: cache not updated after %d attempts (%s); cached entries expire within "
                              "AIAAS_PRINCIPAL_CACHE_TTL_SECONDS", what, attempts, type(exc).__name__)
                    return
                await asyncio.sleep(0.05 * 4**attempt)

    return run
