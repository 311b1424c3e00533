"""Tables of the ``analytics`` context, all in the ``analytics`` PostgreSQL schema.

The read side of metering: projections of ``inference`` completion events, kept by the worker, and the
price book. Nothing here is read from another context's tables.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Float, Index, Numeric, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from aiaas.kernel.db import context_base

Base = context_base("analytics")

# Dimensions a request has no value for are stored as these, so every dimension takes part in the
# bucket's primary key (a NULL would make two rows of the same bucket distinct).
NO_ID = uuid.UUID(int=0)
NO_TEXT = ""

MONEY = Numeric(38, 15)  # USD: a 9-decimal price per million tokens times any token count, exactly
PRICE = Numeric(20, 9)  # USD per million tokens


class _Sums:
    """What a bucket holds: counts, tokens, cost and two histograms."""

    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    reasoning_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY)
    unpriced_requests: Mapped[int] = mapped_column(BigInteger)
    unpriced_tokens: Mapped[int] = mapped_column(BigInteger)
    latency_sum_ms: Mapped[float] = mapped_column(Float)
    ttfb_hist: Mapped[dict[str, int]] = mapped_column(JSONB)
    latency_hist: Mapped[dict[str, int]] = mapped_column(JSONB)


class _ModelBucket(_Sums):
    """One time bucket of one combination of the model-side dimensions (no API key, no user)."""

    # The primary key leads with (org_id, bucket_start): every query reads one org over a time range.
    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(256), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(String(128), primary_key=True)


class _Bucket(_Sums):
    """One time bucket of one combination of every dimension."""

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(256), primary_key=True)
    key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), primary_key=True)
    error_type: Mapped[str] = mapped_column(String(128), primary_key=True)


class UsageMinute(_Bucket, Base):
    """Per-minute buckets."""

    __tablename__ = "usage_minute"


class UsageHour(_Bucket, Base):
    """Per-hour buckets (the same events as the minutes, kept in the same transaction)."""

    __tablename__ = "usage_hour"


class UsageDay(_Bucket, Base):
    """Per-day buckets (UTC days)."""

    __tablename__ = "usage_day"


# The same buckets without the API key and the user, kept in the same transaction: a query that neither
# groups nor filters by key or user reads these, as many times fewer rows as an org has keys x users.
class UsageMinuteByModel(_ModelBucket, Base):
    """Per-minute buckets of the model-side dimensions."""

    __tablename__ = "usage_minute_by_model"


class UsageHourByModel(_ModelBucket, Base):
    """Per-hour buckets of the model-side dimensions."""

    __tablename__ = "usage_hour_by_model"


class UsageDayByModel(_ModelBucket, Base):
    """Per-day buckets of the model-side dimensions."""

    __tablename__ = "usage_day_by_model"


class ProcessedEvent(Base):
    """Every event applied to the projections, once: what makes them idempotent. Also records the
    price-book entry each request was priced with (``price_id``; NULL: unpriced) and its cost."""

    __tablename__ = "processed_events"

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    org_id: Mapped[uuid.UUID]
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    price_id: Mapped[int | None] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal | None] = mapped_column(MONEY)

    __table_args__ = (Index("ix_processed_events_time", "occurred_at"),)


class Price(Base):
    """One entry of the price book: a model's prices per million tokens from ``effective_from`` on.

    Entries are never changed: a new price is a new entry (its id is the price-book version a request
    records). ``deployment`` empty: every deployment of the model; a deployment's own entry wins over it.
    ``cached_input_per_mtok`` NULL: cached prompt tokens cost the input price.
    """

    __tablename__ = "prices"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(256))
    deployment: Mapped[str] = mapped_column(String(256), default=NO_TEXT)
    input_per_mtok: Mapped[Decimal] = mapped_column(PRICE)
    cached_input_per_mtok: Mapped[Decimal | None] = mapped_column(PRICE)
    output_per_mtok: Mapped[Decimal] = mapped_column(PRICE)
    effective_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_prices_model_from", "model", "effective_from"),)


class ProjectionState(Base):
    """The newest event time applied to the projections (for the staleness gauge, across processes)."""

    __tablename__ = "projection_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    newest_event_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
