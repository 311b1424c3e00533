"""Every query of the ``auth`` context, and nothing else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth.models import ApiKey, AuditEvent, User
from aiaas.kernel.audit import AuditFilter


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def user_by_id(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def users_by_ids(session: AsyncSession, ids: Sequence[str]) -> list[User]:
    if not ids:
        return []
    return list((await session.execute(select(User).where(User.id.in_(list(ids))))).scalars())


async def list_users(session: AsyncSession, *, after_id: str | None, limit: int,
                     email_contains: str | None = None) -> list[User]:
    q = select(User).order_by(User.id).limit(limit + 1)
    if after_id:
        q = q.where(User.id > after_id)
    if email_contains:
        q = q.where(User.email.contains(email_contains.lower(), autoescape=True))
    return list((await session.execute(q)).scalars())




def add(session: AsyncSession, row: Any) -> None:
    session.add(row)


async def key_in_org(session: AsyncSession, *, org_id: str, key_id: str, for_update: bool = False) -> ApiKey | None:
    q = select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id)
    if for_update:
        q = q.with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def keys_in_org(session: AsyncSession, *, org_id: str, owner_id: str | None, after_id: str | None,
                      limit: int, include_revoked: bool, name: str | None = None) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.id).limit(limit + 1)
    if owner_id is not None:
        q = q.where(ApiKey.owner_id == owner_id)
    if after_id:
        q = q.where(ApiKey.id > after_id)
    if not include_revoked:
        q = q.where(ApiKey.revoked_at.is_(None))
    if name:
        q = q.where(ApiKey.name.contains(name, autoescape=True))
    return list((await session.execute(q)).scalars())


async def active_keys_of_owner(session: AsyncSession, *, org_id: str, owner_id: str) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.owner_id == owner_id,
                             ApiKey.revoked_at.is_(None)).with_for_update()
    return list((await session.execute(q)).scalars())


async def active_keys_of_org(session: AsyncSession, *, org_id: str) -> list[ApiKey]:
    q = select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None)).with_for_update()
    return list((await session.execute(q)).scalars())


async def key_with_owner_by_hash(session: AsyncSession, key_hash: str) -> tuple[ApiKey, User] | None:
    q = select(ApiKey, User).join(User, User.id == ApiKey.owner_id).where(ApiKey.key_hash == key_hash)
    row = (await session.execute(q)).first()
    return (row[0], row[1]) if row else None


async def stamp_last_used(session: AsyncSession, stamps: Sequence[tuple[str, dt.datetime]]) -> None:
    if not stamps:
        return
    await session.execute(
        text("UPDATE auth.api_keys SET last_used_at = GREATEST(COALESCE(last_used_at, :ts), :ts) "
             "WHERE id = CAST(:id AS uuid)"),
        [{"id": key_id, "ts": ts} for key_id, ts in stamps],
    )


async def disable_user(session: AsyncSession, user_id: str, at: dt.datetime) -> None:
    await session.execute(update(User).where(User.id == user_id).values(disabled_at=at))


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
