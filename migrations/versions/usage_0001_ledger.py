"""Usage ledger (one row per request) and per-org usage policies.

Revision ID: usage_0001
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "usage_0001"
down_revision = "0001"
branch_labels = ("usage",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("deployment", sa.String(256), nullable=True),
        sa.Column("provider", sa.String(128), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("ttfb_ms", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("http_status", sa.SmallInteger(), nullable=False),
        sa.Column("finish_reason", sa.String(64), nullable=True),
        sa.Column("error_type", sa.String(128), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_requests"),
        schema="usage",
    )
    op.create_index("ix_requests_org_time", "requests", ["org_id", "occurred_at", "event_id"], schema="usage")
    op.create_index("ix_requests_org_key_time", "requests", ["org_id", "key_id", "occurred_at"], schema="usage")
    op.create_table(
        "org_policies",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.BigInteger(), nullable=True),
        sa.Column("monthly_token_budget", sa.BigInteger(), nullable=True),
        sa.Column("default_max_tokens", sa.Integer(), nullable=False),
        sa.Column("redis_failure_mode", sa.String(8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name="pk_org_policies"),
        schema="usage",
    )


def downgrade() -> None:
    op.drop_table("org_policies", schema="usage")
    op.drop_index("ix_requests_org_key_time", "requests", schema="usage")
    op.drop_index("ix_requests_org_time", "requests", schema="usage")
    op.drop_table("requests", schema="usage")
