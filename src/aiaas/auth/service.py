"""Business rules of identity: passwords, sessions, login throttling, users, service accounts, API keys.

Services never commit: writes join the caller's unit of work, and their audit entry is added to the same
transaction. Cache effects (refusing a revoked key on every replica) run after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import bcrypt
import msgspec
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import repository as repo
from aiaas.auth import throttle
from aiaas.auth.models import ApiKey, AuditEvent, User
from aiaas.auth.schemas import CreatedKey, Key, KeyCreate, KeyIdentity, Session
from aiaas.auth.schemas import User as UserOut
from aiaas.kernel.audit import AuditEntry, AuditFilter, audit_values, to_entry
from aiaas.kernel.config import Settings
from aiaas.kernel.db import after_commit
from aiaas.kernel.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationFailed
from aiaas.kernel.events import utcnow, uuid7_str
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.principals import PrincipalCache
from aiaas.kernel.redis import Keys, RedisUnavailable
from aiaas.kernel.security import (
    OrgRole,
    Permission,
    Principal,
    display_prefix,
    new_api_key,
    new_session_token,
    role_rank,
    sha256_hex,
)

log = logging.getLogger("aiaas.auth")

_T = TypeVar("_T")

BCRYPT_MAX_BYTES = 72
MIN_PASSWORD_LENGTH = 12
_session_encoder = msgspec.msgpack.Encoder()
_session_decoder = msgspec.msgpack.Decoder(Principal)


# --- Passwords --------------------------------------------------------------------------------------

def check_password_rules(password: str) -> bytes:
    """The UTF-8 bytes of an acceptable new password; bcrypt ignores bytes past 72, so longer is refused."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"Password is shorter than {MIN_PASSWORD_LENGTH} characters.", param="password",
                               extra={"errors": [{"key": "password", "message": "at least 12 characters",
                                                  "source": "body"}]})
    raw = password.encode()
    if len(raw) > BCRYPT_MAX_BYTES:
        raise ValidationFailed("Password is longer than 72 bytes in UTF-8.", param="password",
                               extra={"errors": [{"key": "password", "message": "at most 72 bytes in UTF-8",
                                                  "source": "body"}]})
    return raw


async def hash_password(password: str, *, rounds: int) -> str:
    """bcrypt hash of ``password`` (in a thread: it takes a few hundred milliseconds by design)."""
    raw = check_password_rules(password)
    return (await asyncio.to_thread(bcrypt.hashpw, raw, bcrypt.gensalt(rounds))).decode()


_DUMMY_HASH: dict[int, bytes] = {}


async def verify_password(password: str, hashed: str | None, *, rounds: int) -> bool:
    """Whether ``password`` matches ``hashed``; costs one bcrypt check even without a hash (no user)."""
    raw = password.encode()
    too_long = len(raw) > BCRYPT_MAX_BYTES
    if hashed is None or too_long:
        # Spend the same time as a real check, so response time does not tell whether the account exists.
        dummy = _DUMMY_HASH.get(rounds)
        if dummy is None:
            dummy = _DUMMY_HASH[rounds] = await asyncio.to_thread(bcrypt.hashpw, b"aiaas-dummy", bcrypt.gensalt(rounds))
        await asyncio.to_thread(bcrypt.checkpw, raw[:BCRYPT_MAX_BYTES], dummy)
        return False
    return await asyncio.to_thread(bcrypt.checkpw, raw, hashed.encode())


# --- Users ------------------------------------------------------------------------------------------

def normalize_email(email: str) -> str:
    """Emails are compared case-insensitively: stored and looked up lower-cased, trimmed."""
    return email.strip().lower()


def user_out(u: User) -> UserOut:
    """Public Struct of a user row (no password hash)."""
    return UserOut(id=str(u.id), email=u.email, name=u.name, kind=u.kind, platform_admin=u.platform_admin,
                   created_at=u.created_at, disabled=u.disabled_at is not None,
                   service_org_id=u.service_org_id and str(u.service_org_id))


def _audit(session: AsyncSession, principal: Principal | None, **kw: object) -> None:
    session.add(AuditEvent(**audit_values(principal, **kw)))  # type: ignore[arg-type]


async def create_user(session: AsyncSession, *, email: str, password: str, name: str = "",
                      platform_admin: bool = False, rounds: int, actor: Principal | None) -> UserOut:
    """Create a person account; 409 when the email is taken."""
    email = normalize_email(email)
    if await repo.user_by_email(session, email) is not None:
        raise Conflict(f"A user with email {email} already exists.", code="email_taken")
    user = User(id=_new_id(), email=email, name=name, password_hash=await hash_password(password, rounds=rounds),
                kind="person", platform_admin=platform_admin)
    repo.add(session, user)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"A user with email {email} already exists.", code="email_taken") from None
    _audit(session, actor, action="user.create", target_type="user", target_id=user.id, org_id=None,
           details={"email": email, "platform_admin": platform_admin})
    await session.refresh(user)
    return user_out(user)


def _new_id() -> str:
    return uuid7_str()


async def find_user_by_email(session: AsyncSession, email: str) -> UserOut | None:
    """The user with this email (case-insensitive), or None."""
    u = await repo.user_by_email(session, normalize_email(email))
    return user_out(u) if u else None


async def get_user(session: AsyncSession, user_id: str) -> UserOut | None:
    """One user by id, or None."""
    if not is_uuid(user_id):
        return None
    u = await repo.user_by_id(session, user_id)
    return user_out(u) if u else None


async def get_users(session: AsyncSession, ids: list[str]) -> dict[str, UserOut]:
    """Users by id (unknown ids are left out)."""
    return {str(u.id): user_out(u) for u in await repo.users_by_ids(session, [i for i in ids if is_uuid(i)])}


async def list_users(session: AsyncSession, *, after_id: str | None, limit: int,
                     email_contains: str | None = None) -> tuple[list[UserOut], bool]:
    """A page of users in id order, and whether more follow."""
    rows = await repo.list_users(session, after_id=after_id, limit=limit, email_contains=email_contains)
    return [user_out(u) for u in rows[:limit]], len(rows) > limit


async def create_service_account(session: AsyncSession, *, org_id: str, name: str,
                                 actor: Principal | None) -> UserOut:
    """A service account of ``org_id``: a user without a password that only ever holds API keys."""
    uid = _new_id()
    user = User(id=uid, email=f"sa-{uid}@service-accounts.invalid", name=name, password_hash=None,
                kind="service_account", service_org_id=org_id, platform_admin=False)
    repo.add(session, user)
    await session.flush()
    _audit(session, actor, action="service_account.create", target_type="user", target_id=uid, org_id=org_id,
           details={"name": name})
    await session.refresh(user)
    return user_out(user)


async def disable_service_account(session: AsyncSession, cache: PrincipalCache, *, org_id: str, user_id: str,
                                  actor: Principal | None) -> None:
    """Disable a service account of ``org_id`` and revoke its keys; 404 when it is not one of the org's."""
    u = await repo.user_by_id(session, user_id) if is_uuid(user_id) else None
    if u is None or u.kind != "service_account" or str(u.service_org_id) != org_id or u.disabled_at is not None:
        raise NotFound(f"Service account {user_id} not found.", code="service_account_not_found")
    await repo.disable_user(session, user_id, utcnow())
    await revoke_owner_keys(session, cache, org_id=org_id, owner_id=user_id, actor=actor)
    _audit(session, actor, action="service_account.delete", target_type="user", target_id=user_id, org_id=org_id)


# --- Sessions and login -----------------------------------------------------------------------------

async def login(session: AsyncSession, redis: Redis, keys: Keys, settings: Settings, *, email: str,
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
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys("auth", "session", sha256_hex(token)), _session_encoder.encode(principal), ex=ttl)
        pipe.sadd(keys("auth", "sessions", str(user.id)), sha256_hex(token))
        pipe.expire(keys("auth", "sessions", str(user.id)), ttl)
        await pipe.execute()
    return Session(token=token, token_type="bearer",  # noqa: S106 - the scheme name, not a secret
                   expires_in=ttl, user=user_out(user))


async def logout(redis: Redis, keys: Keys, token: str) -> None:
    """End the session of ``token`` on every replica at once (its Redis entry is the session)."""
    await redis.delete(keys("auth", "session", sha256_hex(token)))


async def end_sessions_of(redis: Redis, keys: Keys, user_id: str) -> None:
    """End every session of a user (disabled account)."""
    index = keys("auth", "sessions", user_id)
    hashes = await redis.smembers(index)
    names = [keys("auth", "session", h.decode() if isinstance(h, bytes) else h) for h in hashes]
    await redis.delete(index, *names)


async def session_principal(redis: Redis, keys: Keys, token: str) -> Principal | None:
    """The principal of a live session token: one Redis GET, no database."""
    raw = await redis.get(keys("auth", "session", sha256_hex(token)))
    return _session_decoder.decode(raw) if raw else None


# --- API keys ---------------------------------------------------------------------------------------

def key_status(k: ApiKey, now: dt.datetime | None = None) -> str:
    """``revoked``, ``expired`` or ``active``."""
    now = now or utcnow()
    if k.revoked_at is not None:
        return "revoked"
    if k.expires_at is not None and k.expires_at <= now:
        return "expired"
    return "active"


def key_out(k: ApiKey) -> Key:
    """Public Struct of a key row (prefix only)."""
    return Key(id=str(k.id), org_id=str(k.org_id), owner_id=str(k.owner_id),
               created_by=k.created_by and str(k.created_by), name=k.name, prefix=k.prefix,
               scopes=list(k.scopes), allowed_models=list(k.allowed_models) if k.allowed_models is not None else None,
               rpm_limit=k.rpm_limit, tpm_limit=k.tpm_limit, expires_at=k.expires_at, revoked_at=k.revoked_at,
               last_used_at=k.last_used_at, rotated_from=k.rotated_from and str(k.rotated_from),
               created_at=k.created_at, status=key_status(k))


def _may_see(principal: Principal, k: ApiKey) -> bool:
    return principal.has(Permission.KEYS_MANAGE_ALL) or str(k.owner_id) == principal.user_id


# What an org member's role is (the ``orgs`` context knows; the composition root passes this in).
RoleLookup = Callable[[str, str], Awaitable[OrgRole | None]]  # (org_id, user_id) -> role


def _escalation(what: str) -> Forbidden:
    return Forbidden(f"You cannot hand out more than you hold: {what}.", code="privilege_escalation")


def check_within(actor: Principal, *, role: OrgRole | None, scopes: Iterable[str],
                 allowed_models: Iterable[str] | None, rpm_limit: int | None, tpm_limit: int | None,
                 expires_at: dt.datetime | None) -> None:
    """Refuse (403 ``privilege_escalation``) a key that would hold more than ``actor`` holds.

    The invariant of every write that creates or hands out power (a new key, a rotated key's secret): the
    key's owner's role is at most the actor's, and when the actor is itself an API key, the new key's
    scopes are a subset of the actor's, its model allow-list is within the actor's, its RPM and TPM limits
    are at most the actor's, and it expires no later than the actor does. A platform admin (a session;
    keys never carry platform powers) holds everything.
    """
    if actor.platform_admin and actor.kind == "session":
        return
    if role_rank(role) > role_rank(actor.org_role):
        raise _escalation(f"the key's owner is {role.value if role else 'none'}, you are "
                          f"{actor.org_role.value if actor.org_role else 'not a member'}")
    if actor.kind != "api_key":
        return
    if not set(scopes) <= set(actor.scopes):
        raise Forbidden("A key cannot create a key with scopes it does not have.", code="scope_escalation")
    if actor.allowed_models is not None and (allowed_models is None or not set(allowed_models) <= actor.allowed_models):
        raise _escalation("the key may use models outside your key's allow-list")
    for name, mine, theirs in (("rpm_limit", actor.rpm_limit, rpm_limit), ("tpm_limit", actor.tpm_limit, tpm_limit)):
        if mine is not None and (theirs is None or theirs > mine):
            raise _escalation(f"its {name} is above your key's ({mine})")
    if actor.expires_at is not None and (expires_at is None or expires_at > actor.expires_at):
        raise _escalation("it would outlive your key")


def _given(value: _T | msgspec.UnsetType | None, default: _T | None) -> _T | None:
    """A field of a request: ``default`` when it was left out, else what was sent (``None`` included)."""
    return default if value is msgspec.UNSET else value  # type: ignore[return-value]


async def _owner_for(session: AsyncSession, principal: Principal, org_id: str, data: KeyCreate) -> str:
    if data.service_account_id is None:
        if principal.user_id is None:
            raise Forbidden("This principal cannot own keys.", code="no_owner")
        return principal.user_id
    if not principal.has(Permission.KEYS_MANAGE_ALL, write=True):
        raise Forbidden("Creating keys for service accounts needs the 'keys:manage_all' permission.",
                        code="permission_denied")
    sa_id = data.service_account_id
    u = await repo.user_by_id(session, sa_id) if is_uuid(sa_id) else None
    if u is None or u.kind != "service_account" or str(u.service_org_id) != org_id or u.disabled_at is not None:
        raise NotFound(f"Service account {sa_id} not found.", code="service_account_not_found")
    return sa_id


def _issue(*, org_id: str, owner_id: str, created_by: str | None, name: str, scopes: list[str],
           allowed_models: list[str] | None, rpm_limit: int | None, tpm_limit: int | None,
           expires_at: dt.datetime | None, rotated_from: str | None = None) -> tuple[str, ApiKey]:
    secret = new_api_key()
    row = ApiKey(id=_new_id(), org_id=org_id, owner_id=owner_id, created_by=created_by, name=name,
                 prefix=display_prefix(secret), key_hash=sha256_hex(secret), scopes=scopes,
                 allowed_models=allowed_models, rpm_limit=rpm_limit, tpm_limit=tpm_limit, expires_at=expires_at,
                 rotated_from=rotated_from)
    return secret, row


async def create_key(session: AsyncSession, *, org_id: str, data: KeyCreate, actor: Principal,
                     roles: RoleLookup | None = None) -> CreatedKey:
    """Issue a key of ``org_id`` for the caller or one of the org's service accounts; the secret is returned once.

    The key never holds more than ``actor`` (:func:`check_within`). A key creating a key passes its own
    restrictions on where the request leaves them out (its model allow-list, limits and expiry), so
    "the same, but for another app" needs no arithmetic from the caller. ``roles`` gives the role of a
    service-account owner in the org (required when ``data.service_account_id`` is set).
    """
    owner_id = await _owner_for(session, actor, org_id, data)
    scopes = sorted({str(s) for s in data.scopes})
    by_key = actor.kind == "api_key"
    expires = _given(data.expires_at, actor.expires_at if by_key else None)
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=dt.UTC)
        if expires <= utcnow():
            raise ValidationFailed("`expires_at` is in the past.", param="expires_at",
                                   extra={"errors": [{"key": "expires_at", "message": "must be in the future",
                                                      "source": "body"}]})
    inherited_models = sorted(actor.allowed_models) if by_key and actor.allowed_models is not None else None
    given_models = _given(data.allowed_models, inherited_models)
    models = sorted(set(given_models)) if given_models is not None else None
    rpm = _given(data.rpm_limit, actor.rpm_limit if by_key else None)
    tpm = _given(data.tpm_limit, actor.tpm_limit if by_key else None)
    owner_role = actor.org_role
    if owner_id != actor.user_id:
        if roles is None:
            raise RuntimeError("create_key for a service account needs the org's role lookup")
        owner_role = await roles(org_id, owner_id)
    check_within(actor, role=owner_role, scopes=scopes, allowed_models=models, rpm_limit=rpm, tpm_limit=tpm,
                 expires_at=expires)
    secret, row = _issue(org_id=org_id, owner_id=owner_id, created_by=actor.user_id, name=data.name, scopes=scopes,
                         allowed_models=models, rpm_limit=rpm, tpm_limit=tpm, expires_at=expires)
    repo.add(session, row)
    await session.flush()
    _audit(session, actor, action="key.create", target_type="api_key", target_id=str(row.id), org_id=org_id,
           details={"name": data.name, "owner_id": owner_id, "scopes": scopes, "prefix": row.prefix})
    await session.refresh(row)
    return CreatedKey(key=secret, api_key=key_out(row))


async def list_keys(session: AsyncSession, *, org_id: str, actor: Principal, after_id: str | None, limit: int,
                    include_revoked: bool = False, owner_id: str | None = None,
                    name: str | None = None) -> tuple[list[Key], bool]:
    """A page of the org's keys: all of them for key admins, else the caller's own."""
    if not actor.has(Permission.KEYS_MANAGE_ALL):
        owner_id = actor.user_id
    elif owner_id is not None and not is_uuid(owner_id):
        return [], False
    rows = await repo.keys_in_org(session, org_id=org_id, owner_id=owner_id, after_id=after_id, limit=limit,
                                  include_revoked=include_revoked, name=name)
    return [key_out(k) for k in rows[:limit]], len(rows) > limit


async def _visible_key(session: AsyncSession, *, org_id: str, key_id: str, actor: Principal,
                       for_update: bool = False) -> ApiKey:
    k = await repo.key_in_org(session, org_id=org_id, key_id=key_id, for_update=for_update) \
        if is_uuid(key_id) else None
    if k is None or not _may_see(actor, k):
        raise NotFound(f"API key {key_id} not found.", code="key_not_found")
    return k


async def get_key(session: AsyncSession, *, org_id: str, key_id: str, actor: Principal) -> Key:
    """One key of the org the caller may see; 404 otherwise."""
    return key_out(await _visible_key(session, org_id=org_id, key_id=key_id, actor=actor))


async def revoke_key(session: AsyncSession, cache: PrincipalCache, *, org_id: str, key_id: str,
                     actor: Principal) -> Key:
    """Revoke a key: refused on every replica as soon as the transaction commits. Idempotent."""
    k = await _visible_key(session, org_id=org_id, key_id=key_id, actor=actor, for_update=True)
    if k.revoked_at is None:
        k.revoked_at = utcnow()
        _audit(session, actor, action="key.revoke", target_type="api_key", target_id=str(k.id), org_id=org_id,
               details={"prefix": k.prefix})
        key_hash = k.key_hash
        after_commit(session, lambda: cache.refuse(key_hash))
    await session.flush()
    return key_out(k)


async def rotate_key(session: AsyncSession, cache: PrincipalCache, *, org_id: str, key_id: str,
                     grace_seconds: int, actor: Principal, roles: RoleLookup) -> CreatedKey:
    """Issue a successor with the same settings; the old key keeps working for ``grace_seconds`` only.

    The actor receives the successor's secret, so rotating a key is handing it out: refused (403) when
    the key holds more than the actor (an admin rotating an owner's key would get the owner's powers).
    """
    old = await _visible_key(session, org_id=org_id, key_id=key_id, actor=actor, for_update=True)
    if key_status(old) != "active":
        raise Conflict(f"API key {key_id} is {key_status(old)} and cannot be rotated.", code="key_not_active")
    owner_role = actor.org_role if str(old.owner_id) == actor.user_id else await roles(org_id, str(old.owner_id))
    check_within(actor, role=owner_role, scopes=old.scopes, allowed_models=old.allowed_models,
                 rpm_limit=old.rpm_limit, tpm_limit=old.tpm_limit, expires_at=old.expires_at)
    now = utcnow()
    secret, new = _issue(org_id=org_id, owner_id=str(old.owner_id), created_by=actor.user_id, name=old.name,
                         scopes=list(old.scopes), allowed_models=old.allowed_models, rpm_limit=old.rpm_limit,
                         tpm_limit=old.tpm_limit, expires_at=old.expires_at, rotated_from=str(old.id))
    old_hash = old.key_hash
    if grace_seconds == 0:
        old.revoked_at = now
        after_commit(session, lambda: cache.refuse(old_hash))
    else:
        until = now + dt.timedelta(seconds=grace_seconds)
        old.expires_at = min(old.expires_at, until) if old.expires_at else until
        # The cached principal's TTL was bounded by the old expiry; drop it so the new one applies.
        after_commit(session, lambda: cache.drop(old_hash))
    repo.add(session, new)
    await session.flush()
    _audit(session, actor, action="key.rotate", target_type="api_key", target_id=str(old.id), org_id=org_id,
           details={"new_key_id": str(new.id), "grace_seconds": grace_seconds})
    await session.refresh(new)
    return CreatedKey(key=secret, api_key=key_out(new))


async def revoke_owner_keys(session: AsyncSession, cache: PrincipalCache, *, org_id: str, owner_id: str,
                            actor: Principal | None) -> int:
    """Revoke every key ``owner_id`` holds in ``org_id`` (member removed, service account deleted)."""
    rows = await repo.active_keys_of_owner(session, org_id=org_id, owner_id=owner_id)
    return _revoke_rows(session, cache, rows, org_id=org_id, actor=actor, reason="owner_removed")


async def revoke_org_keys(session: AsyncSession, cache: PrincipalCache, *, org_id: str,
                          actor: Principal | None) -> int:
    """Revoke every key of an org (the org was deleted)."""
    rows = await repo.active_keys_of_org(session, org_id=org_id)
    return _revoke_rows(session, cache, rows, org_id=org_id, actor=actor, reason="org_deleted")


def _revoke_rows(session: AsyncSession, cache: PrincipalCache, rows: list[ApiKey], *, org_id: str,
                 actor: Principal | None, reason: str) -> int:
    now = utcnow()
    hashes = []
    for k in rows:
        k.revoked_at = now
        hashes.append(k.key_hash)
        _audit(session, actor, action="key.revoke", target_type="api_key", target_id=str(k.id), org_id=org_id,
               details={"prefix": k.prefix, "reason": reason})
    if hashes:
        async def refuse_all() -> None:
            for h in hashes:
                await cache.refuse(h)

        after_commit(session, refuse_all)
    return len(rows)


async def identify_api_key(session: AsyncSession, key_hash: str) -> KeyIdentity | None:
    """What an active key of an enabled owner says about its caller; None for anything else."""
    found = await repo.key_with_owner_by_hash(session, key_hash)
    if found is None:
        return None
    k, owner = found
    if key_status(k) != "active" or owner.disabled_at is not None:
        return None
    return KeyIdentity(key_id=str(k.id), org_id=str(k.org_id), owner_id=str(k.owner_id),
                       scopes=frozenset(k.scopes),
                       allowed_models=frozenset(k.allowed_models) if k.allowed_models is not None else None,
                       rpm_limit=k.rpm_limit, tpm_limit=k.tpm_limit, expires_at=k.expires_at)


# --- Last-used stamps (off the request path) ---------------------------------------------------------

class LastUsedRecorder:
    """Collects "key used at" stamps on the hot path and writes them to a Redis hash in the background.

    ``record`` is synchronous and does no I/O; a background task writes what accumulated about once a
    second (one HSET for many requests). The worker moves the hash into PostgreSQL (:func:`flush_last_used`).
    """

    def __init__(self, redis: Redis, keys: Keys, *, interval: float = 1.0) -> None:
        self._redis = redis
        self._name = keys("auth", "last_used")
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


async def flush_last_used(session: AsyncSession, redis: Redis, keys: Keys) -> int:
    """Move the Redis hash of last-used stamps into ``auth.api_keys`` (run periodically by the worker)."""
    name = keys("auth", "last_used")
    batch = keys("auth", "last_used", "flushing", _new_id())
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


# --- Audit ------------------------------------------------------------------------------------------

async def list_audit(session: AsyncSession, f: AuditFilter) -> list[AuditEntry]:
    """Audit entries of ``auth`` matching ``f``, newest first."""
    return [to_entry(r) for r in await repo.audit_entries(session, f)]

