"""Inference catalog: the client wire formats a deployment speaks itself (``deployments.native_apis``).

Additive: a column with a default the previous release never reads.

Revision ID: inference_0005
Revises: inference_0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "inference_0005"
down_revision = "inference_0004"
branch_labels = None
depends_on = None

S = "inference"


def upgrade() -> None:
    op.add_column("deployments", sa.Column("native_apis", postgresql.ARRAY(sa.Text()), nullable=False,
                                           server_default="{}"), schema=S)


def downgrade() -> None:
    op.drop_column("deployments", "native_apis", schema=S)
