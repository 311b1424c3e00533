"""API keys: issue, list, revoke, rotate, and the invariant that a key never holds more than its giver."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import repository as repo
from aiaas.auth.models import ApiKey
from aiaas.auth.principals import PrincipalCache, retrying, write_ahead
from aiaas.auth.schemas import CreatedKey, Key, KeyCreate, KeyIdentity
from aiaas.auth.service.common import audit, new_id
from aiaas.kernel import money
from aiaas.kernel.db import after_commit
from aiaas.kernel.errors import Conflict, Forbidden, NotFound, ValidationFailed
from aiaas.kernel.events import utcnow
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.security import (
    OrgRole,
    Permission,
    Principal,
    display_prefix,
    new_api_key,
    role_rank,
    sha256_hex,
)

_T = TypeVar("_T")


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
               rpm_limit=k.rpm_limit, tpm_limit=k.tpm_limit,
               monthly_spend_limit_usd=money.limit_text(k.monthly_spend_limit_usd), expires_at=k.expires_at,
               revoked_at=k.revoked_at,
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
                 expires_at: dt.datetime | None, spend_limit: Decimal | None = None) -> None:
    """Refuse (403 ``privilege_escalation``) a key that would hold more than ``actor`` holds.

    The invariant of every write that creates or hands out power (a new key, a rotated key's secret): the
    key's owner's role is at most the actor's, and when the actor is itself an API key, the new key's
    scopes are a subset of the actor's, its model allow-list is within the actor's, its RPM and TPM
    limits and its monthly spend limit are at most the actor's, and it expires no later than the actor
    does. A platform admin (a session; keys never carry platform powers) holds everything.
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
    mine_spend = actor.spend_limit_nusd
    if mine_spend is not None and (spend_limit is None or money.nano_usd_ceil(spend_limit) > mine_spend):
        raise _escalation(f"its monthly_spend_limit_usd is above your key's ({money.usd_text(mine_spend)})")
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
           expires_at: dt.datetime | None, rotated_from: str | None = None,
           spend_limit: Decimal | None = None) -> tuple[str, ApiKey]:
    secret = new_api_key()
    row = ApiKey(id=new_id(), org_id=org_id, owner_id=owner_id, created_by=created_by, name=name,
                 prefix=display_prefix(secret), key_hash=sha256_hex(secret), scopes=scopes,
                 allowed_models=allowed_models, rpm_limit=rpm_limit, tpm_limit=tpm_limit, expires_at=expires_at,
                 rotated_from=rotated_from, monthly_spend_limit_usd=spend_limit)
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
    inherited_spend = money.usd_decimal(actor.spend_limit_nusd) if by_key else None
    spend = _given(data.monthly_spend_limit_usd, inherited_spend)
    money.check_spend_limit(spend)
    owner_role = actor.org_role
    if owner_id != actor.user_id:
        if roles is None:
            raise RuntimeError("create_key for a service account needs the org's role lookup")
        owner_role = await roles(org_id, owner_id)
    check_within(actor, role=owner_role, scopes=scopes, allowed_models=models, rpm_limit=rpm, tpm_limit=tpm,
                 expires_at=expires, spend_limit=spend)
    secret, row = _issue(org_id=org_id, owner_id=owner_id, created_by=actor.user_id, name=data.name, scopes=scopes,
                         allowed_models=models, rpm_limit=rpm, tpm_limit=tpm, expires_at=expires, spend_limit=spend)
    repo.add(session, row)
    await session.flush()
    audit(session, actor, action="key.create", target_type="api_key", target_id=str(row.id), org_id=org_id,
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
        audit(session, actor, action="key.revoke", target_type="api_key", target_id=str(k.id), org_id=org_id,
               details={"prefix": k.prefix})
        await session.flush()
        # Refused on every replica before the revocation commits: no 2xx while the key could still work.
        await write_ahead(cache.refuse(k.key_hash), "The revocation")
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
                 rpm_limit=old.rpm_limit, tpm_limit=old.tpm_limit, expires_at=old.expires_at,
                 spend_limit=old.monthly_spend_limit_usd)
    now = utcnow()
    secret, new = _issue(org_id=org_id, owner_id=str(old.owner_id), created_by=actor.user_id, name=old.name,
                         scopes=list(old.scopes), allowed_models=old.allowed_models, rpm_limit=old.rpm_limit,
                         tpm_limit=old.tpm_limit, expires_at=old.expires_at, rotated_from=str(old.id),
                         spend_limit=old.monthly_spend_limit_usd)
    old_hash = old.key_hash
    if grace_seconds == 0:
        old.revoked_at = now
    else:
        until = now + dt.timedelta(seconds=grace_seconds)
        old.expires_at = min(old.expires_at, until) if old.expires_at else until
    repo.add(session, new)
    await session.flush()
    if grace_seconds == 0:
        await write_ahead(cache.refuse(old_hash), "The rotation")
    else:
        # The cached principal's TTL was bounded by the old expiry: drop it before and again after the
        # commit, so the entry that remains is bounded by the new one.
        await write_ahead(cache.drop(old_hash), "The rotation")
        after_commit(session, retrying(lambda: cache.drop(old_hash), "rotation"))
    audit(session, actor, action="key.rotate", target_type="api_key", target_id=str(old.id), org_id=org_id,
           details={"new_key_id": str(new.id), "grace_seconds": grace_seconds})
    await session.refresh(new)
    return CreatedKey(key=secret, api_key=key_out(new))


async def forget_member(cache: PrincipalCache, *, org_id: str, user_id: str) -> None:
    """A member's role is about to change (or the member to go): drop its cached principals now, before
    the change commits (503 and nothing changed when Redis cannot take it). Call
    :func:`forget_member_after_commit` too: a request that read the old role meanwhile may have cached it."""
    await write_ahead(cache.drop_member(org_id, user_id), "The membership change")


def forget_member_after_commit(cache: PrincipalCache, *, org_id: str, user_id: str) -> Callable[[], Awaitable[None]]:
    """The second drop of :func:`forget_member`, for ``after_commit`` (retried; logged if it never lands)."""
    return retrying(lambda: cache.drop_member(org_id, user_id), "membership change")


async def revoke_owner_keys(session: AsyncSession, cache: PrincipalCache, *, org_id: str, owner_id: str,
                            actor: Principal | None) -> int:
    """Revoke every key ``owner_id`` holds in ``org_id`` (member removed, service account deleted)."""
    rows = await repo.active_keys_of_owner(session, org_id=org_id, owner_id=owner_id)
    return await _revoke_rows(session, cache, rows, org_id=org_id, actor=actor, reason="owner_removed")


async def revoke_org_keys(session: AsyncSession, cache: PrincipalCache, *, org_id: str,
                          actor: Principal | None) -> int:
    """Revoke every key of an org (the org was deleted)."""
    rows = await repo.active_keys_of_org(session, org_id=org_id)
    return await _revoke_rows(session, cache, rows, org_id=org_id, actor=actor, reason="org_deleted")


async def _revoke_rows(session: AsyncSession, cache: PrincipalCache, rows: list[ApiKey], *, org_id: str,
                      actor: Principal | None, reason: str) -> int:
    now = utcnow()
    hashes = []
    for k in rows:
        k.revoked_at = now
        hashes.append(k.key_hash)
        audit(session, actor, action="key.revoke", target_type="api_key", target_id=str(k.id), org_id=org_id,
               details={"prefix": k.prefix, "reason": reason})
    if hashes:
        await session.flush()
        await write_ahead(cache.refuse(*hashes), "Revoking the keys")
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
                       rpm_limit=k.rpm_limit, tpm_limit=k.tpm_limit, expires_at=k.expires_at,
                       spend_limit_nusd=money.spend_limit_nusd(k.monthly_spend_limit_usd))
