"""The shape of audit entries, shared by the contexts that record management writes.

Each context records the writes to the resources it owns in its own ``audit_events`` table, in the same
transaction as the write (so an entry exists exactly when the write committed). Ids are UUIDv7, so entries
of several contexts merge into one time order for reading.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
from sqlalchemy import DateTime, String, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.kernel.events import uuid7_str
from aiaas.kernel.logs import request_id_var
from aiaas.kernel.security import Principal


class AuditColumns:
    """Columns of an ``audit_events`` table (mixed into each context's model)."""

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True, default=uuid7_str)
    org_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False), index=True)
    actor_user_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    actor_key_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded management write: who did what to which target, in which org, when, in which request."""

    id: str
    org_id: str | None
    actor_user_id: str | None
    actor_key_id: str | None
    action: str
    target_type: str
    target_id: str | None
    request_id: str | None
    details: dict[str, Any]
    occurred_at: dt.datetime


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of an audit query (all optional, combined with AND)."""

    org_id: str | None = None
    action: str | None = None
    actor_user_id: str | None = None
    target_id: str | None = None
    before_id: str | None = None  # the cursor: entries older than this id
    limit: int = 50


def audit_values(principal: Principal | None, *, action: str, target_type: str, target_id: str | None,
                 org_id: str | None, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Column values of a new audit row for a write done by ``principal`` in the current request."""
    return {
        "id": uuid7_str(),
        "org_id": org_id,
        "actor_user_id": principal.user_id if principal else None,
        "actor_key_id": principal.key_id if principal else None,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "request_id": request_id_var.get(),
        "details": details or {},
    }


def to_entry(row: Any) -> AuditEntry:
    """The public Struct of an audit row."""
    return AuditEntry(id=str(row.id), org_id=row.org_id and str(row.org_id), actor_user_id=row.actor_user_id
                      and str(row.actor_user_id), actor_key_id=row.actor_key_id and str(row.actor_key_id),
                      action=row.action, target_type=row.target_type, target_id=row.target_id,
                      request_id=row.request_id, details=dict(row.details or {}), occurred_at=row.occurred_at)
