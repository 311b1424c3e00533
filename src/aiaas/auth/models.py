"""Tables of the ``auth`` context, all in the ``auth`` PostgreSQL schema."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ARRAY, Boolean, DateTime, Index, Integer, Numeric, String, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.kernel.audit import AuditColumns
from aiaas.kernel.db import context_base
from aiaas.kernel.events import uuid7_str

Base = context_base("auth")


class User(Base):
    """A person (email + password) or a service account of one org (no password, keys only)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True, default=uuid7_str)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), default="person")  # person | service_account
    service_org_id: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))  # the org of a service account
    platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """An API key of one org, owned by a member or a service account; only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_org_id_owner_id", "org_id", "owner_id"),)

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True, default=uuid7_str)
    org_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    owner_id: Mapped[str] = mapped_column(Uuid(as_uuid=False))
    created_by: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    allowed_models: Mapped[list[str] | None] = mapped_column(ARRAY(String(200)))
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    monthly_spend_limit_usd: Mapped[Decimal | None] = mapped_column(Numeric(16, 9))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    rotated_from: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditEvent(AuditColumns, Base):
    """A management write to a resource of ``auth`` (users, keys)."""

    __tablename__ = "audit_events"
