"""Analytics: the buckets without API key and user (``usage_{minute,hour,day}_by_model``), filled from
the full buckets.

A query that neither groups nor filters by key or user (by model, deployment, endpoint, status; the
performance report) reads these: as many times fewer rows as an org has keys x users. The worker keeps
them in the same transaction as the full buckets. The backfill sums the full buckets per model-side key
(histograms merged by ``analytics.hist_sum``, an aggregate over ``hist_merge``); it reads each full table
once, holding no lock the worker needs beyond the reads.

Revision ID: analytics_0002
Revises: analytics_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "analytics_0002"
down_revision = "analytics_0001"
branch_labels = None
depends_on = None

S = "analytics"
GRANULARITIES = ("minute", "hour", "day")
KEY = ("org_id", "bucket_start", "model", "deployment", "endpoint", "status", "error_type")
SUMS = ("requests", "prompt_tokens", "cached_prompt_tokens", "completion_tokens", "reasoning_tokens", "cost_usd",
        "unpriced_requests", "unpriced_tokens", "latency_sum_ms")


def upgrade() -> None:
    op.execute(f"CREATE AGGREGATE {S}.hist_sum(jsonb) (SFUNC = {S}.hist_merge, STYPE = jsonb, INITCOND = '{{}}')")
    for g in GRANULARITIES:
        name = f"usage_{g}_by_model"
        op.create_table(
            name,
            sa.Column("org_id", sa.Uuid(), nullable=False),
            sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("deployment", sa.String(256), nullable=False),
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
            sa.PrimaryKeyConstraint(*KEY, name=f"pk_{name}"),
            schema=S,
        )
        keys = ", ".join(KEY)
        sums = ", ".join(f"sum({c})" for c in SUMS)
        op.execute(f"INSERT INTO {S}.{name} ({keys}, {', '.join(SUMS)}, ttfb_hist, latency_hist) "  # noqa: S608
                   f"SELECT {keys}, {sums}, {S}.hist_sum(ttfb_hist), {S}.hist_sum(latency_hist) "
                   f"FROM {S}.usage_{g} GROUP BY {keys}")


def downgrade() -> None:
    for g in GRANULARITIES:
        op.drop_table(f"usage_{g}_by_model", schema=S)
    op.execute(f"DROP AGGREGATE {S}.hist_sum(jsonb)")
