"""Inference catalog: the prices spend limits charge each model with (``model_prices``).

A copy of the ``analytics`` price book that ``analytics`` keeps: written when a price is added and by the
worker's periodic sync, so the first sync after this upgrade fills it.

Revision ID: inference_0003
Revises: inference_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "inference_0003"
down_revision = "inference_0002"
branch_labels = None
depends_on = None

S = "inference"


def upgrade() -> None:
    op.create_table(
        "model_prices",
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("prices", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("model_prices", schema=S)
