"""Tables of the ``usage`` context, all in the ``usage`` PostgreSQL schema."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Index, Integer, Numeric, SmallInteger, String, func
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.kernel.db import context_base

Base = context_base("usage")


class RequestRecord(Base):
    """The usage ledger: one row per inference request, keyed by the event id that reported it.

    Partitioned by month of ``occurred_at`` (one partition ``requests_YYYYMM`` per UTC calendar month,
    created by ``repository.ensure_partitions``), so retention drops whole months instead of deleting rows.
    PostgreSQL requires the partition key in every unique constraint, hence the primary key
    ``(event_id, occurred_at)``: an event's ``occurred_at`` never changes, so a redelivered, replayed or
    duplicated event still hits ``ON CONFLICT (event_id, occurred_at) DO NOTHING``.
    """

    __tablename__ = "requests"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128))
    org_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID | None]
    key_id: Mapped[uuid.UUID | None]
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    deployment: Mapped[str | None] = mapped_column(String(256))
    provider: Mapped[str | None] = mapped_column(String(128))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    # Parts of prompt_tokens and completion_tokens (CompletionRecorded schema 2); 0 when not reported.
    cached_prompt_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    reasoning_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    ttfb_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int] = mapped_column(SmallInteger)
    finish_reason: Mapped[str | None] = mapped_column(String(64))
    error_type: Mapped[str | None] = mapped_column(String(128))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    reservation_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # The listing: an org's requests, newest first, with the cursor (occurred_at, event_id).
        Index("ix_requests_org_time", "org_id", "occurred_at", "event_id"),
        Index("ix_requests_org_key_time", "org_id", "key_id", "occurred_at"),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )


class OrgPolicy(Base):
    """An organization's usage policy: its rate limits, monthly token budget and spend limit (USD), and
    Redis-outage behaviour."""

    __tablename__ = "org_policies"

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger)
    monthly_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    monthly_spend_limit_usd: Mapped[Decimal | None] = mapped_column(Numeric(16, 9))
    default_max_tokens: Mapped[int] = mapped_column(Integer, default=4096)
    redis_failure_mode: Mapped[str] = mapped_column(String(8), default="closed")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                    onupdate=func.now())
