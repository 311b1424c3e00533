"""Tables of the ``inference`` context, all in the ``inference`` PostgreSQL schema.

The catalog: a public model name (``models``) maps to one or more ``deployments``; ``org_model_access``
restricts which models an organization may use (no row: every model). ``managed_by`` tells rows created
through the admin API (``api``) from those reconciled from a catalog file (``file``).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ARRAY, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aiaas.kernel.db import context_base

Base = context_base("inference")


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    owned_by: Mapped[str] = mapped_column(String(100), default="aiaas")
    capabilities: Mapped[list[str]] = mapped_column(ARRAY(Text))
    context_length: Mapped[int | None] = mapped_column(Integer)
    managed_by: Mapped[str] = mapped_column(String(10), default="api")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                    onupdate=func.now())
    deployments: Mapped[list[DeploymentRow]] = relationship(
        back_populates="model", lazy="raise", cascade="all, delete-orphan", order_by="DeploymentRow.name")


class DeploymentRow(Base):
    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("model_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("inference.models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(20))
    upstream_model: Mapped[str] = mapped_column(String(256))
    base_url: Mapped[str | None] = mapped_column(Text)
    credential_ref: Mapped[str | None] = mapped_column(String(200))
    weight: Mapped[int] = mapped_column(Integer, default=1)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    connect_timeout: Mapped[float] = mapped_column(Float)
    first_byte_timeout: Mapped[float] = mapped_column(Float)
    chunk_timeout: Mapped[float] = mapped_column(Float)
    total_timeout: Mapped[float] = mapped_column(Float)
    context_length: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    ca_bundle: Mapped[str | None] = mapped_column(Text)
    native_apis: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    model: Mapped[ModelRow] = relationship(back_populates="deployments", lazy="raise")


class OrgModelAccessRow(Base):
    __tablename__ = "org_model_access"

    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    models: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    managed_by: Mapped[str] = mapped_column(String(10), default="api")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                    onupdate=func.now())


class ModelPriceRow(Base):
    """The prices spend limits charge a model with (``schemas.ModelPrice`` as JSON, newest first), by
    public model name: a copy of the ``analytics`` price book that ``analytics`` keeps up to date.
    Keyed by name, not by model id, so a price set before its model exists (or outliving a model that
    is deleted and added again) applies as soon as the model does."""

    __tablename__ = "model_prices"

    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    prices: Mapped[list[dict[str, object]]] = mapped_column(JSONB)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                    onupdate=func.now())


class StoredResponseRow(Base):
    """A Responses API response kept for ``GET /v1/responses/{id}`` and ``previous_response_id``.

    ``input_items`` are the request's own input items (not the conversation before it) and ``output`` the
    response's output items, both as the Responses API shapes them; a conversation is rebuilt by walking
    ``previous_response_id`` (one recursive query). Every read filters on ``org_id`` and ``expires_at``, so
    another org's response and an expired one are both simply not there.
    """

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    response: Mapped[dict[str, object]] = mapped_column(JSONB)
    input_items: Mapped[list[dict[str, object]]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
