"""Helpers every part of the identity rules uses: ids and audit entries."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth.models import AuditEvent
from aiaas.kernel.audit import audit_values
from aiaas.kernel.events import uuid7_str
from aiaas.kernel.security import Principal


def audit(session: AsyncSession, principal: Principal | None, **kw: object) -> None:
    """Record a write of ``principal`` in ``auth``'s audit trail, in the write's own transaction."""
    session.add(AuditEvent(**audit_values(principal, **kw)))  # type: ignore[arg-type]


def new_id() -> str:
    """A new time-ordered id (UUIDv7)."""
    return uuid7_str()
