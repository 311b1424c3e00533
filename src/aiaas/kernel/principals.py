"""The Redis cache of resolved API-key principals, shared by every replica.

A warm lookup is one ``GET`` of a msgspec-encoded :class:`Principal` under the SHA-256 of the key, so the
streamer's hot path makes no database query. Entries are owned by ``auth`` (``auth:principal:{hash}``)
and are removed or replaced the moment the facts they copy change:

* revoking a key writes a *refusal* (tombstone) over its entry, so every replica refuses the key on its
  next request; cache fills use ``SET NX`` and can never overwrite a refusal with a stale principal;
* a role change or member removal drops every entry of that member in that org (an index set per
  member lists them);
* entries expire after a TTL, never later than the key itself expires.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from aiaas.kernel.redis import Keys
from aiaas.kernel.security import Principal

REFUSED = b"!"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Principal)


class Refused:
    """Marker: the cache knows this token is refused (revoked or unknown)."""


REFUSAL = Refused()


class PrincipalCache:
    """Get, fill, refuse and drop cached API-key principals."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_seconds: int = 300, refusal_seconds: int = 86_400) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_seconds = ttl_seconds
        self.refusal_seconds = refusal_seconds

    def key(self, token_hash: str) -> str:
        """Redis key of the entry for one token hash."""
        return self.keys("auth", "principal", token_hash)

    def _index(self, org_id: str, user_id: str) -> str:
        return self.keys("auth", "principals", org_id, user_id)

    @staticmethod
    def decode(raw: bytes | None) -> Principal | Refused | None:
        """An entry as read from Redis under :meth:`key`: the principal, :data:`REFUSAL` when the token is
        known bad, None on a miss. Callers read it in their own ``MGET`` with other keys."""
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

    async def refuse(self, token_hash: str, *, ttl_seconds: int | None = None) -> None:
        """Make every replica refuse this token (overwrites any cached principal)."""
        await self.redis.set(self.key(token_hash), REFUSED, ex=ttl_seconds or self.refusal_seconds)

    async def drop(self, *token_hashes: str) -> None:
        """Forget cached entries, so the next request resolves them afresh."""
        if token_hashes:
            await self.redis.delete(*(self.key(h) for h in token_hashes))

    async def drop_member(self, org_id: str, user_id: str) -> None:
        """Forget every cached principal of ``user_id``'s keys in ``org_id`` (role changed or removed).

        Refusals stay: a revoked key must not come back because its owner's role changed.
        """
        index = self._index(org_id, user_id)
        members = await self.redis.smembers(index)
        names = [self.key(m.decode() if isinstance(m, bytes) else str(m)) for m in members]
        if names:
            await self.redis.eval(_DELETE_UNLESS_REFUSED, len(names), *names, REFUSED)  # type: ignore[misc]
        await self.redis.delete(index)


_DELETE_UNLESS_REFUSED = """
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) ~= ARGV[1] then redis.call('DEL', k) end
end
return 0
"""
