"""Business rules of tenancy: organizations, memberships and roles, service accounts, the audit trail.

An org always keeps an owner. Admins manage members and keys but cannot create, change or remove
owners; only owners rename or delete the org. Users are found through ``auth.api``; writes to ``auth``
(service accounts, key revocations) join the caller's ``auth`` unit of work.
"""

from __future__ import annotations

import heapq

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import api as auth_api
from aiaas.kernel.audit import AuditEntry, AuditFilter, audit_values, to_entry
from aiaas.kernel.db import after_commit
from aiaas.kernel.errors import Conflict, Forbidden, NotFound
from aiaas.kernel.events import utcnow, uuid7_str
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.security import OrgRole, Principal, role_rank
from aiaas.orgs import repository as repo
from aiaas.orgs.models import AuditEvent, Membership, Organization
from aiaas.orgs.schemas import Member, Org, ServiceAccount

PrincipalCache = auth_api.PrincipalCache


def _audit(session: AsyncSession, actor: Principal | None, **kw: object) -> None:
    session.add(AuditEvent(**audit_values(actor, **kw)))  # type: ignore[arg-type]


def _org(o: Organization, role: str | None = None) -> Org:
    return Org(id=str(o.id), name=o.name, created_at=o.created_at, role=OrgRole(role) if role else None)


def _not_found(org_id: str) -> NotFound:
    return NotFound(f"Organization {org_id} not found.", code="org_not_found")


# --- Organizations ----------------------------------------------------------------------------------

async def create_org(session: AsyncSession, *, name: str, owner_id: str, actor: Principal | None) -> Org:
    """Create an org whose first owner is ``owner_id``."""
    org = Organization(id=uuid7_str(), name=name, created_by=owner_id)
    repo.add(session, org)
    repo.add(session, Membership(id=uuid7_str(), org_id=org.id, user_id=owner_id, role=OrgRole.OWNER.value))
    await session.flush()
    _audit(session, actor, action="org.create", target_type="org", target_id=org.id, org_id=org.id,
           details={"name": name})
    await session.refresh(org)
    return _org(org, OrgRole.OWNER)


async def get_org(session: AsyncSession, *, org_id: str, role: OrgRole | None = None) -> Org:
    """A live org; 404 when unknown or deleted."""
    o = await repo.live_org(session, org_id) if is_uuid(org_id) else None
    if o is None:
        raise _not_found(org_id)
    return _org(o, role)


async def org_exists(session: AsyncSession, org_id: str) -> bool:
    """Whether ``org_id`` is a live (not deleted) org."""
    return is_uuid(org_id) and await repo.live_org(session, org_id) is not None


async def role_of(session: AsyncSession, *, org_id: str, user_id: str) -> OrgRole | None:
    """``user_id``'s role in the live org ``org_id``, or None when not a member (or the org is gone)."""
    if not (is_uuid(org_id) and is_uuid(user_id)):
        return None
    role = await repo.role_in_live_org(session, org_id, user_id)
    return OrgRole(role) if role else None


async def find_owned_org(session: AsyncSession, *, name: str, owner_id: str) -> Org | None:
    """The oldest live org named ``name`` that ``owner_id`` owns (bootstrap's idempotency)."""
    o = await repo.org_named_with_owner(session, name, owner_id)
    return _org(o, OrgRole.OWNER) if o else None


async def list_orgs(session: AsyncSession, *, actor: Principal, after_id: str | None, limit: int,
                    name: str | None = None, everything: bool = False) -> tuple[list[Org], bool]:
    """Orgs the caller belongs to (an API key: its own org); ``everything`` (platform admins): all of them."""
    if actor.kind == "api_key":
        org = await get_org(session, org_id=actor.org_id or "", role=actor.org_role)
        return ([org] if after_id is None and (not name or name in org.name) else []), False
    if everything:
        rows = await repo.all_orgs(session, after_id=after_id, limit=limit, name=name)
        return [_org(o) for o in rows[:limit]], len(rows) > limit
    pairs = await repo.orgs_of_user(session, actor.user_id or "", after_id=after_id, limit=limit, name=name)
    return [_org(o, r) for o, r in pairs[:limit]], len(pairs) > limit


async def rename_org(session: AsyncSession, *, org_id: str, name: str, actor: Principal) -> Org:
    """Rename a live org."""
    o = await repo.live_org(session, org_id, for_update=True)
    if o is None:
        raise _not_found(org_id)
    old = o.name
    o.name = name
    await session.flush()
    _audit(session, actor, action="org.rename", target_type="org", target_id=org_id, org_id=org_id,
           details={"from": old, "to": name})
    return _org(o, actor.org_role)


async def delete_org(session: AsyncSession, auth_session: AsyncSession, cache: PrincipalCache, *, org_id: str,
                     actor: Principal) -> None:
    """Soft-delete an org: it disappears for everyone (404) and every key of it is revoked."""
    o = await repo.live_org(session, org_id, for_update=True)
    if o is None:
        raise _not_found(org_id)
    o.deleted_at = utcnow()
    _audit(session, actor, action="org.delete", target_type="org", target_id=org_id, org_id=org_id)
    await auth_api.revoke_org_keys(auth_session, cache, org_id=org_id, actor=actor)
    for uid in await repo.all_member_ids(session, org_id):
        after_commit(session, auth_api.forget_member_after_commit(cache, org_id=org_id, user_id=uid))


# --- Members ----------------------------------------------------------------------------------------

def _check_role_change(actor: Principal, *, current: OrgRole | None, new: OrgRole | None) -> None:
    """Nothing an actor changes may hold more than the actor: nobody grants a role above their own or
    changes (or removes) a member who ranks above them, so only owners (and platform admins) touch owners."""
    if actor.platform_admin:
        return
    mine = role_rank(actor.org_role)
    if role_rank(new) > mine or role_rank(current) > mine:
        if OrgRole.OWNER in (new, current):
            raise Forbidden("Only an owner can grant, change or remove the owner role.", code="owner_only")
        raise Forbidden("You cannot grant a role above your own or change a member who ranks above you.",
                        code="privilege_escalation")


async def list_members(session: AsyncSession, auth_session: AsyncSession, *, org_id: str, after_id: str | None,
                       limit: int, role: OrgRole | None = None, kind: str | None = None) -> tuple[list[Member], bool]:
    """Members of the org in joining order, with their email and kind."""
    rows = await repo.memberships(session, org_id, after_id=after_id, limit=limit, role=role.value if role else None)
    users = await auth_api.get_users(auth_session, [str(m.user_id) for m in rows])
    out = []
    for m in rows[:limit]:
        u = users.get(str(m.user_id))
        if u is None or (kind and u.kind != kind):
            continue
        out.append(Member(user_id=str(m.user_id), email=u.email, name=u.name, kind=u.kind, role=OrgRole(m.role),
                          joined_at=m.created_at))
    return out, len(rows) > limit


async def add_member(session: AsyncSession, auth_session: AsyncSession, *, org_id: str, email: str, role: OrgRole,
                     actor: Principal) -> Member:
    """Add an existing person by email with ``role``; 404 when no such user, 409 when already a member."""
    _check_role_change(actor, current=None, new=role)
    user = await auth_api.find_user_by_email(auth_session, email)
    if user is None or user.kind != "person" or user.disabled:
        raise NotFound(f"No user with email {email.strip().lower()}.", code="user_not_found")
    if await repo.membership(session, org_id, user.id) is not None:
        raise Conflict(f"{user.email} is already a member.", code="already_member")
    m = Membership(id=uuid7_str(), org_id=org_id, user_id=user.id, role=role.value)
    repo.add(session, m)
    await session.flush()
    _audit(session, actor, action="member.add", target_type="user", target_id=user.id, org_id=org_id,
           details={"email": user.email, "role": role.value})
    await session.refresh(m)
    return Member(user_id=user.id, email=user.email, name=user.name, kind=user.kind, role=role,
                  joined_at=m.created_at)


async def _membership(session: AsyncSession, org_id: str, user_id: str) -> Membership:
    m = await repo.membership(session, org_id, user_id, for_update=True) if is_uuid(user_id) else None
    if m is None:
        raise NotFound(f"Member {user_id} not found.", code="member_not_found")
    return m


async def change_role(session: AsyncSession, auth_session: AsyncSession, cache: PrincipalCache, *, org_id: str,
                      user_id: str, role: OrgRole, actor: Principal) -> Member:
    """Change a member's role; the org keeps at least one owner. Takes effect on every replica at once."""
    m = await _membership(session, org_id, user_id)
    current = OrgRole(m.role)
    _check_role_change(actor, current=current, new=role)
    u = await auth_api.get_user(auth_session, user_id)
    if role is OrgRole.OWNER and (u is None or u.kind != "person"):
        raise Forbidden("A service account cannot be an owner.", code="service_account_owner")
    if current is OrgRole.OWNER and role is not OrgRole.OWNER and await repo.count_owners(session, org_id) <= 1:
        raise Conflict("An organization must keep at least one owner.", code="last_owner")
    m.role = role.value
    await session.flush()
    _audit(session, actor, action="member.role_change", target_type="user", target_id=user_id, org_id=org_id,
           details={"from": current.value, "to": role.value})
    await auth_api.forget_member(cache, org_id=org_id, user_id=user_id)
    after_commit(session, auth_api.forget_member_after_commit(cache, org_id=org_id, user_id=user_id))
    return Member(user_id=user_id, email=u.email if u else "", name=u.name if u else "", kind=u.kind if u else "",
                  role=role, joined_at=m.created_at)


async def remove_member(session: AsyncSession, auth_session: AsyncSession, cache: PrincipalCache, *, org_id: str,
                        user_id: str, actor: Principal) -> None:
    """Remove a member and revoke its keys in the org; the org keeps at least one owner."""
    m = await _membership(session, org_id, user_id)
    current = OrgRole(m.role)
    _check_role_change(actor, current=current, new=None)
    if current is OrgRole.OWNER and await repo.count_owners(session, org_id) <= 1:
        raise Conflict("An organization must keep at least one owner.", code="last_owner")
    await repo.delete(session, m)
    _audit(session, actor, action="member.remove", target_type="user", target_id=user_id, org_id=org_id,
           details={"role": current.value})
    await auth_api.revoke_owner_keys(auth_session, cache, org_id=org_id, owner_id=user_id, actor=actor)
    after_commit(session, auth_api.forget_member_after_commit(cache, org_id=org_id, user_id=user_id))


# --- Service accounts -------------------------------------------------------------------------------

async def create_service_account(session: AsyncSession, auth_session: AsyncSession, *, org_id: str, name: str,
                                 role: OrgRole, actor: Principal) -> ServiceAccount:
    """A service account of the org with ``role`` (never owner): production apps hold its keys, not a person's."""
    if role is OrgRole.OWNER:
        raise Forbidden("A service account cannot be an owner.", code="service_account_owner")
    _check_role_change(actor, current=None, new=role)
    user = await auth_api.create_service_account(auth_session, org_id=org_id, name=name, actor=actor)
    m = Membership(id=uuid7_str(), org_id=org_id, user_id=user.id, role=role.value)
    repo.add(session, m)
    await session.flush()
    _audit(session, actor, action="member.add", target_type="user", target_id=user.id, org_id=org_id,
           details={"service_account": True, "role": role.value})
    return ServiceAccount(id=user.id, name=name, role=role, created_at=user.created_at)


async def list_service_accounts(session: AsyncSession, auth_session: AsyncSession, *, org_id: str,
                                after_id: str | None, limit: int) -> tuple[list[ServiceAccount], bool]:
    """Service accounts of the org, in creation order."""
    members, more = await list_members(session, auth_session, org_id=org_id, after_id=after_id, limit=limit,
                                       kind="service_account")
    return [ServiceAccount(id=m.user_id, name=m.name, role=m.role, created_at=m.joined_at) for m in members], more


async def delete_service_account(session: AsyncSession, auth_session: AsyncSession, cache: PrincipalCache, *,
                                 org_id: str, user_id: str, actor: Principal) -> None:
    """Delete a service account of the org: its membership goes and its keys are revoked."""
    m = await _membership(session, org_id, user_id)
    await auth_api.disable_service_account(auth_session, cache, org_id=org_id, user_id=user_id, actor=actor)
    await repo.delete(session, m)
    after_commit(session, auth_api.forget_member_after_commit(cache, org_id=org_id, user_id=user_id))


# --- Audit ------------------------------------------------------------------------------------------

async def list_audit(session: AsyncSession, auth_session: AsyncSession,
                     f: AuditFilter) -> tuple[list[AuditEntry], bool]:
    """Audit entries of both contexts matching ``f``, newest first (UUIDv7 ids give one time order)."""
    wider = AuditFilter(**{**{k: getattr(f, k) for k in f.__struct_fields__}, "limit": f.limit + 1})
    ours = [to_entry(r) for r in await repo.audit_entries(session, wider)]
    theirs = await auth_api.list_audit(auth_session, wider)
    merged = list(heapq.merge(ours, theirs, key=lambda e: e.id, reverse=True))
    return merged[: f.limit], len(merged) > f.limit

