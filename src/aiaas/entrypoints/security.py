"""Token -> principal resolution for both HTTP roles: ``auth.api`` (who) + ``orgs.api`` (role in the org).

Warm path of an API key: one Redis ``GET`` of the msgspec-encoded principal under the key's SHA-256
(``auth.api.PrincipalCache``), no database query. Cold path: the key from ``auth``,
the owner's role from ``orgs``, then the principal is cached (never longer than the key lives). Unknown,
revoked or expired keys and keys of removed members are cached as refusals for a minute, so guessing
traffic does not reach PostgreSQL either. Session tokens live in Redis only (one ``GET``).

Redis unreachable: an API key is resolved on the cold path from PostgreSQL on every request and nothing
is cached (refusals neither); a session token cannot be checked, so it gets a 503 rather than a 401.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

import msgspec

from aiaas.auth import api as auth_api
from aiaas.kernel.errors import ServiceUnavailable
from aiaas.kernel.events import utcnow
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.redis import RedisUnavailable
from aiaas.kernel.security import Principal, sha256_hex, token_kind
from aiaas.orgs import api as orgs_api

if TYPE_CHECKING:
    from aiaas.entrypoints.bootstrap import Container

log = logging.getLogger("aiaas.security")

NEGATIVE_TTL_SECONDS = 60


class PrincipalResolver:
    """The :class:`~aiaas.kernel.guard.Authenticator` of the apps, built on the container's Redis and databases."""

    def __init__(self, container: Container) -> None:
        self._db = container.db
        self._redis = container.redis
        self._keys = container.keys
        self.cache: auth_api.PrincipalCache = container.principal_cache
        self._last_used = container.last_used

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of an API key or session token; None when unknown, expired or revoked.

        A warm API key is one Redis ``GET`` (``auth``'s principal cache) and no database query.
        """
        kind = token_kind(token)
        if kind == "session":
            try:
                return await auth_api.session_principal(self._redis, self._keys, token)
            except RedisUnavailable as exc:
                raise ServiceUnavailable("Sessions cannot be checked right now; retry shortly or use an API key.",
                                         code="sessions_unavailable", headers={"Retry-After": "1"}) from exc
        if kind != "api_key":
            return None
        token_hash = sha256_hex(token)
        try:
            cached = await self.cache.get(token_hash)
        except RedisUnavailable as exc:
            log.debug("principal cache unavailable (%s): resolving the key from the database", type(exc).__name__)
            principal = await self.resolve_cold(token_hash, cache=False)
        else:
            if isinstance(cached, auth_api.Refused):
                return None
            principal = cached if cached is not None else await self.resolve_cold(token_hash)
        if principal is not None and principal.key_id:
            self._last_used.record(principal.key_id, time.time())
        return principal

    async def resolve_cold(self, token_hash: str, *, cache: bool = True) -> Principal | None:
        """Build an API key's principal from PostgreSQL and cache it (or cache the refusal).

        ``cache=False`` (Redis known down) or a Redis failure while filling: the answer is returned uncached.
        """
        async with self._db.sessionmaker("auth")() as s:
            ident = await auth_api.identify_api_key(s, token_hash)
        role = None
        if ident is not None:
            async with self._db.sessionmaker("orgs")() as s:
                role = await orgs_api.role_of(s, org_id=ident.org_id, user_id=ident.owner_id)
        if ident is None or role is None:
            if cache:
                with contextlib.suppress(*RedisUnavailable):
                    await self.cache.refuse(token_hash, ttl_seconds=NEGATIVE_TTL_SECONDS)
            return None
        principal = Principal(kind="api_key", user_id=ident.owner_id, org_id=ident.org_id, key_id=ident.key_id,
                              org_role=role, scopes=ident.scopes, allowed_models=ident.allowed_models,
                              rpm_limit=ident.rpm_limit, tpm_limit=ident.tpm_limit,
                              spend_limit_nusd=ident.spend_limit_nusd, expires_at=ident.expires_at)
        ttl = None
        if ident.expires_at is not None:
            remaining = (ident.expires_at - utcnow()).total_seconds()
            if remaining <= 0:
                return None
            ttl = math.ceil(remaining)
        if cache:
            with contextlib.suppress(*RedisUnavailable):
                await self.cache.put(token_hash, principal, ttl_seconds=ttl)
        return principal

    async def for_org(self, principal: Principal, org_id: str) -> Principal | None:
        """``principal`` acting in ``org_id``: an API key only in its own org, a user only where a member."""
        if not is_uuid(org_id):
            return None
        if principal.kind == "api_key":
            return principal if principal.org_id == org_id else None
        if principal.user_id is None:
            return None
        async with self._db.sessionmaker("orgs")() as s:
            role = await orgs_api.role_of(s, org_id=org_id, user_id=principal.user_id)
            if role is None and not (principal.platform_admin and await orgs_api.org_exists(s, org_id)):
                return None
        return msgspec.structs.replace(principal, org_id=org_id, org_role=role)
