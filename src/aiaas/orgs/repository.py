"""Every query of the ``orgs`` context, and nothing else."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.kernel.audit import AuditFilter
from aiaas.orgs.models import AuditEvent, Membership, Organization


def add(session: AsyncSession, row: Any) -> None:
    session.add(row)


async def live_org(session: AsyncSession, org_id: str, *, for_update: bool = False) -> Organization | None:
    q = select(Organization).where(Organization.id == org_id, Organization.deleted_at.is_(None))
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def role_in_live_org(session: AsyncSession, org_id: str, user_id: str) -> str | None:
    q = (select(Membership.role).join(Organization, Organization.id == Membership.org_id)
         .where(Membership.org_id == org_id, Membership.user_id == user_id, Organization.deleted_at.is_(None)))
    return (await session.execute(q)).scalar_one_or_none()


async def orgs_of_user(session: AsyncSession, user_id: str, *, after_id: str | None, limit: int,
                       name: str | None) -> list[tuple[Organization, str]]:
    q = (select(Organization, Membership.role).join(Membership, Membership.org_id == Organization.id)
         .where(Membership.user_id == user_id, Organization.deleted_at.is_(None))
         .order_by(Organization.id).limit(limit + 1))
    if after_id:
        q = q.where(Organization.id > after_id)
    if name:
        q = q.where(Organization.name.contains(name, autoescape=True))
    return [(o, r) for o, r in (await session.execute(q)).all()]


async def all_orgs(session: AsyncSession, *, after_id: str | None, limit: int, name: str | None) -> list[Organization]:
    q = select(Organization).where(Organization.deleted_at.is_(None)).order_by(Organization.id).limit(limit + 1)
    if after_id:
        q = q.where(Organization.id > after_id)
    if name:
        q = q.where(Organization.name.contains(name, autoescape=True))
    return list((await session.execute(q)).scalars())


async def org_named_with_owner(session: AsyncSession, name: str, owner_id: str) -> Organization | None:
    q = (select(Organization).join(Membership, Membership.org_id == Organization.id)
         .where(Organization.name == name, Organization.deleted_at.is_(None), Membership.user_id == owner_id,
                Membership.role == "owner").order_by(Organization.id).limit(1))
    return (await session.execute(q)).scalar_one_or_none()


async def membership(session: AsyncSession, org_id: str, user_id: str, *,
                     for_update: bool = False) -> Membership | None:
    q = select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def memberships(session: AsyncSession, org_id: str, *, after_id: str | None, limit: int,
                      role: str | None, user_ids: list[str] | None = None) -> list[Membership]:
    q = select(Membership).where(Membership.org_id == org_id).order_by(Membership.id).limit(limit + 1)
    if after_id:
        q = q.where(Membership.id > after_id)
    if role:
        q = q.where(Membership.role == role)
    if user_ids is not None:
        q = q.where(Membership.user_id.in_(user_ids))
    return list((await session.execute(q)).scalars())


async def all_member_ids(session: AsyncSession, org_id: str) -> list[str]:
    q = select(Membership.user_id).where(Membership.org_id == org_id)
    return [str(u) for u in (await session.execute(q)).scalars()]


async def count_owners(session: AsyncSession, org_id: str) -> int:
    # Lock the owner rows: two concurrent demotions cannot both see "another owner remains".
    q = select(Membership.id).where(Membership.org_id == org_id, Membership.role == "owner").with_for_update()
    return len((await session.execute(q)).all())


async def delete(session: AsyncSession, row: Any) -> None:
    await session.delete(row)


async def audit_entries(session: AsyncSession, f: AuditFilter) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(f.limit)
    if f.org_id:
        q = q.where(AuditEvent.org_id == f.org_id)
    if f.action:
        q = q.where(AuditEvent.action == f.action)
    if f.actor_user_id:
        q = q.where(AuditEvent.actor_user_id == f.actor_user_id)
    if f.target_id:
        q = q.where(AuditEvent.target_id == f.target_id)
    if f.before_id:
        q = q.where(AuditEvent.id < f.before_id)
    return list((await session.execute(q)).scalars())

