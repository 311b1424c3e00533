"""Inference: stored Responses API responses (``stored_responses``), for retrieval and ``previous_response_id``.

Additive only: a new table the previous release never reads.

Revision ID: inference_0004
Revises: inference_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "inference_0004"
down_revision = "inference_0003"
branch_labels = None
depends_on = None

S = "inference"


def upgrade() -> None:
    op.create_table(
        "stored_responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("org_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("response", postgresql.JSONB(), nullable=False),
        sa.Column("input_items", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        schema=S,
    )
    op.create_index("ix_stored_responses_expires_at", "stored_responses", ["expires_at"], schema=S)


def downgrade() -> None:
    op.drop_index("ix_stored_responses_expires_at", "stored_responses", schema=S)
    op.drop_table("stored_responses", schema=S)
