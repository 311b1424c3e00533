"""Tables of the ``orgs`` context, all in the ``orgs`` PostgreSQL schema."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String, UniqueConstraint, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.kernel.audit import AuditColumns
from aiaas.kernel.db import context_base
from aiaas.kernel.events import uuid7_str

Base = context_base("orgs")


class Organization(Base):
    """A tenant. Deleting one is soft (``deleted_at``): its rows stay for the audit trail."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True, default=uuid7_str)
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Membership(Base):
    """A user's (or service account's) role in one org."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True, default=uuid7_str)
    org_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), index=True)
    user_id: Mapped[str] = mapped_column(Uuid(as_uuid=False), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditEvent(AuditColumns, Base):
    """A management write to a resource of ``orgs`` (organizations, memberships, service accounts)."""

    __tablename__ = "audit_events"
