"""Analytics: usage projections per minute, hour and day, the processed-event record, the price book.

Revision ID: analytics_0001
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "analytics_0001"
down_revision = "0001"
branch_labels = ("analytics",)
depends_on = None

S = "analytics"
BUCKETS = ("usage_minute", "usage_hour", "usage_day")


def _bucket_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error_type", sa.String(128), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(38, 15), nullable=False),
        sa.Column("unpriced_requests", sa.BigInteger(), nullable=False),
        sa.Column("unpriced_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum_ms", sa.Float(), nullable=False),
        sa.Column("ttfb_hist", postgresql.JSONB(), nullable=False),
        sa.Column("latency_hist", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "bucket_start", "model", "deployment", "key_id", "user_id", "endpoint",
                                "status", "error_type", name=f"pk_{name}"),
        schema=S,
    )


def upgrade() -> None:
    for name in BUCKETS:
        _bucket_table(name)
    # Histograms merge by adding counts bucket by bucket (see aiaas.analytics.sketch): the upsert of a
    # bucket row adds the new histogram to the stored one with this function.
    op.execute("""
        CREATE FUNCTION analytics.hist_merge(a jsonb, b jsonb) RETURNS jsonb
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb)
          FROM (SELECT k, sum(n) AS n
                FROM (SELECT key AS k, value::bigint AS n FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
                      UNION ALL
                      SELECT key, value::bigint FROM jsonb_each_text(coalesce(b, '{}'::jsonb))) AS parts
                GROUP BY k) AS merged
        $$
    """)
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("price_id", sa.BigInteger(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(38, 15), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
        schema=S,
    )
    op.create_index("ix_processed_events_time", "processed_events", ["occurred_at"], schema=S)
    op.create_table(
        "prices",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=False),
        sa.Column("input_per_mtok", sa.Numeric(20, 9), nullable=False),
        sa.Column("cached_input_per_mtok", sa.Numeric(20, 9), nullable=True),
        sa.Column("output_per_mtok", sa.Numeric(20, 9), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prices"),
        schema=S,
    )
    op.create_index("ix_prices_model_from", "prices", ["model", "effective_from"], schema=S)
    op.create_table(
        "projection_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("newest_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_projection_state"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("projection_state", schema=S)
    op.drop_table("prices", schema=S)
    op.drop_table("processed_events", schema=S)
    op.execute("DROP FUNCTION analytics.hist_merge(jsonb, jsonb)")
    for name in BUCKETS:
        op.drop_table(name, schema=S)
