"""Org usage policies: the table, and their Redis cache (``PolicyStore``) that admission reads."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel import money
from aiaas.kernel.errors import BadRequest
from aiaas.kernel.redis import Keys, RedisClient, RedisUnavailable
from aiaas.usage import repository
from aiaas.usage.models import OrgPolicy
from aiaas.usage.schemas import (
    UsagePolicy,
    UsagePolicyUpdate,
)
from aiaas.usage.service.health import HEALTH
from aiaas.usage.service.keys import policy_key

log = logging.getLogger("aiaas.usage")

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


# --------------------------------------------------------------------------- policies
def _policy(org_id: str, row: OrgPolicy | None, default_mode: str) -> UsagePolicy:
    if row is None:
        return UsagePolicy(org_id=org_id, redis_failure_mode=default_mode)  # type: ignore[arg-type]
    return UsagePolicy(
        org_id=org_id, rpm_limit=row.rpm_limit, tpm_limit=row.tpm_limit,
        monthly_token_budget=row.monthly_token_budget, default_max_tokens=row.default_max_tokens,
        monthly_spend_limit_usd=money.limit_text(row.monthly_spend_limit_usd),
        redis_failure_mode=row.redis_failure_mode,  # type: ignore[arg-type]
    )


class _CachedPolicy(UsagePolicy, frozen=True, kw_only=True):
    """The cached form: the policy plus the spend limit in nano-USD, the integer the script compares."""

    spend_limit_nusd: int | None = None


_policy_encoder = msgspec.json.Encoder()


def encode_policy(policy: UsagePolicy) -> bytes:
    """A policy as ``PolicyStore`` caches it and the admission script reads it."""
    spend = policy.monthly_spend_limit_usd
    return _policy_encoder.encode(_CachedPolicy(
        **msgspec.structs.asdict(policy),
        spend_limit_nusd=money.spend_limit_nusd(None if spend is None else Decimal(spend))))


_policy_decoder = msgspec.json.Decoder(UsagePolicy)


class PolicyStore:
    """Org policies for the hot path: RedisClient (minutes), then the database on a miss.

    Nothing is kept in process memory between requests (a policy change is seen by every replica at
    once, on the write-through to Redis). With a warm Redis entry an admission reads no database.
    While Redis is down the policy is read from the database, so each org's fail-open/fail-closed
    choice still applies (that outage path costs one query per request; the defaults if PostgreSQL is
    unreachable too).
    """

    def __init__(self, redis: RedisClient, keys: Keys, sessions: SessionFactory, *, default_mode: str = "closed",
                 redis_ttl: int = 300) -> None:
        self._redis = redis
        self._keys = keys
        self._sessions = sessions
        self._default_mode = default_mode
        self._redis_ttl = redis_ttl
        HEALTH.default_mode = default_mode

    def _key(self, org_id: str) -> str:
        return policy_key(self._keys, org_id)

    async def get(self, org_id: str) -> UsagePolicy:
        """The policy of ``org_id`` (the defaults when it has none)."""
        try:
            raw = await self._redis.get(self._key(org_id))
        except RedisUnavailable:
            raw = None
        if raw is not None:
            return _policy_decoder.decode(raw)
        return await self.load(org_id)

    async def load(self, org_id: str) -> UsagePolicy:
        """The policy of ``org_id`` from the database (the defaults when it has none or the database is
        unreachable), written to the Redis cache when Redis is up. For ``admit`` on a cache miss."""
        try:
            oid = uuid.UUID(org_id)
        except ValueError:
            return _policy(org_id, None, self._default_mode)
        try:
            async with self._sessions() as session:
                row = await repository.get_policy(session, oid)
                policy = _policy(org_id, row, self._default_mode)
        except Exception:  # database unreachable: the defaults, not an error on the hot path
            log.warning("cannot load usage policy of %s; using defaults", org_id, exc_info=True)
            return _policy(org_id, None, self._default_mode)
        with suppress(RedisUnavailable):
            await self._redis.set(self._key(org_id), encode_policy(policy), ex=self._redis_ttl)
        return policy

    async def store(self, policy: UsagePolicy) -> None:
        """Write a changed policy through to Redis (every replica reads it on its next request)."""
        try:
            await self._redis.set(self._key(policy.org_id), encode_policy(policy), ex=self._redis_ttl)
        except RedisUnavailable:
            log.warning("policy cache of %s not updated: Redis unavailable", policy.org_id)

    async def invalidate(self, org_id: str) -> None:
        """Forget a changed policy in Redis (the next request reloads it from the database)."""
        try:
            await self._redis.delete(self._key(org_id))
        except RedisUnavailable:
            log.warning("policy cache of %s not invalidated: Redis unavailable", org_id)


async def get_policy(session: AsyncSession, org_id: str, *, default_mode: str = "closed") -> UsagePolicy:
    """An org's stored policy (the defaults when none is stored)."""
    return _policy(org_id, await repository.get_policy(session, _org_uuid(org_id)), default_mode)


async def put_policy(session: AsyncSession, org_id: str, data: UsagePolicyUpdate) -> UsagePolicy:
    """Create or replace an org's policy."""
    money.check_spend_limit(data.monthly_spend_limit_usd)
    row = await repository.upsert_policy(session, _org_uuid(org_id), msgspec.structs.asdict(data))
    return _policy(org_id, row, "closed")


def _org_uuid(org_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(org_id)
    except ValueError as exc:
        raise BadRequest("org_id must be a UUID", param="org_id") from exc
