"""Passwords (bcrypt, 12 to 72 bytes) and person accounts, and the context's audit trail."""

from __future__ import annotations

import asyncio

import bcrypt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import repository as repo
from aiaas.auth.models import User
from aiaas.auth.schemas import User as UserOut
from aiaas.auth.service.common import audit, new_id
from aiaas.kernel.audit import AuditEntry, AuditFilter, to_entry
from aiaas.kernel.errors import Conflict, ValidationFailed
from aiaas.kernel.pagination import is_uuid
from aiaas.kernel.security import Principal

BCRYPT_MAX_BYTES = 72
MIN_PASSWORD_LENGTH = 12


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


async def create_user(session: AsyncSession, *, email: str, password: str, name: str = "",
                      platform_admin: bool = False, rounds: int, actor: Principal | None) -> UserOut:
    """Create a person account; 409 when the email is taken."""
    email = normalize_email(email)
    if await repo.user_by_email(session, email) is not None:
        raise Conflict(f"A user with email {email} already exists.", code="email_taken")
    user = User(id=new_id(), email=email, name=name, password_hash=await hash_password(password, rounds=rounds),
                kind="person", platform_admin=platform_admin)
    repo.add(session, user)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"A user with email {email} already exists.", code="email_taken") from None
    audit(session, actor, action="user.create", target_type="user", target_id=user.id, org_id=None,
           details={"email": email, "platform_admin": platform_admin})
    await session.refresh(user)
    return user_out(user)


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


# --- Audit ------------------------------------------------------------------------------------------

async def list_audit(session: AsyncSession, f: AuditFilter) -> list[AuditEntry]:
    """Audit entries of ``auth`` matching ``f``, newest first."""
    return [to_entry(r) for r in await repo.audit_entries(session, f)]
