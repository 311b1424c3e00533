"""Service accounts: users of one org without a password that only ever hold API keys."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import repository as repo
from aiaas.auth.models import User
from aiaas.auth.principals import PrincipalCache
from aiaas.auth.schemas import User as UserOut
from aiaas.auth.service.common import audit, new_id
from aiaas.auth.service.keys import revoke_owner_keys
from aiaas.auth.service.users import user_out
from aiaas.kernel.errors import NotFound
from aiaas.kernel.events import utcnow
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.security import Principal


async def create_service_account(session: AsyncSession, *, org_id: str, name: str,
                                 actor: Principal | None) -> UserOut:
    """A service account of ``org_id``: a user without a password that only ever holds API keys."""
    uid = new_id()
    user = User(id=uid, email=f"sa-{uid}@service-accounts.invalid", name=name, password_hash=None,
                kind="service_account", service_org_id=org_id, platform_admin=False)
    repo.add(session, user)
    await session.flush()
    audit(session, actor, action="service_account.create", target_type="user", target_id=uid, org_id=org_id,
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
    audit(session, actor, action="service_account.delete", target_type="user", target_id=user_id, org_id=org_id)
