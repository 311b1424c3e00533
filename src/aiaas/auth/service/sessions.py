"""Sessions and login: throttled sign-in (``auth.throttle``), opaque tokens kept in Redis only."""

from __future__ import annotations

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import repository as repo
from aiaas.auth import throttle
from aiaas.auth.schemas import Session
from aiaas.auth.service.users import normalize_email, user_out, verify_password
from aiaas.kernel.config import Settings
from aiaas.kernel.errors import Unauthenticated
from aiaas.kernel.redis import Keys, RedisClient
from aiaas.kernel.security import (
    Principal,
    new_session_token,
    sha256_hex,
)

_session_encoder = msgspec.msgpack.Encoder()
_session_decoder = msgspec.msgpack.Decoder(Principal)


# --- Sessions and login -----------------------------------------------------------------------------

async def login(session: AsyncSession, redis: RedisClient, keys: Keys, settings: Settings, *, email: str,
                password: str, address: str) -> Session:
    """Check email and password (throttled: see ``auth.throttle``) and open a session in Redis."""
    email = normalize_email(email)
    attempt = throttle.LoginKeys.of(keys, email=email, address=address)
    await throttle.admit_attempt(redis, attempt, settings)
    user = await repo.user_by_email(session, email)
    ok = await verify_password(password, user.password_hash if user else None, rounds=settings.bcrypt_rounds)
    if not ok or user is None or user.disabled_at is not None or user.kind != "person":
        raise Unauthenticated("Email or password is wrong.", code="invalid_credentials")
    await throttle.succeeded(redis, attempt)
    token = new_session_token()
    principal = Principal(kind="session", user_id=str(user.id), platform_admin=user.platform_admin)
    ttl = settings.session_ttl_seconds
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(keys("auth", "session", sha256_hex(token)), _session_encoder.encode(principal), ex=ttl)
        pipe.sadd(keys("auth", "sessions", str(user.id)), sha256_hex(token))
        pipe.expire(keys("auth", "sessions", str(user.id)), ttl)
        await pipe.execute()
    return Session(token=token, token_type="bearer",  # noqa: S106 - the scheme name, not a secret
                   expires_in=ttl, user=user_out(user))


async def logout(redis: RedisClient, keys: Keys, token: str) -> None:
    """End the session of ``token`` on every replica at once (its Redis entry is the session)."""
    await redis.delete(keys("auth", "session", sha256_hex(token)))


async def end_sessions_of(redis: RedisClient, keys: Keys, user_id: str) -> None:
    """End every session of a user (disabled account)."""
    index = keys("auth", "sessions", user_id)
    hashes = await redis.smembers(index)
    async with redis.pipeline(transaction=False) as pipe:  # one key per command: works on a Redis Cluster
        for h in hashes:
            pipe.delete(keys("auth", "session", h.decode() if isinstance(h, bytes) else h))
        pipe.delete(index)
        await pipe.execute()


async def session_principal(redis: RedisClient, keys: Keys, token: str) -> Principal | None:
    """The principal of a live session token: one Redis GET, no database."""
    raw = await redis.get(keys("auth", "session", sha256_hex(token)))
    return _session_decoder.decode(raw) if raw else None
