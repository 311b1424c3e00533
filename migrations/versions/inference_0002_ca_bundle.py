"""Inference catalog: a deployment's own CA bundle for its https upstream (``deployments.ca_bundle``).

Revision ID: inference_0002
Revises: inference_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "inference_0002"
down_revision = "inference_0001"
branch_labels = None
depends_on = None

S = "inference"


def upgrade() -> None:
    # Nullable, no default: every existing deployment keeps the system's trust store.
    op.add_column("deployments", sa.Column("ca_bundle", sa.Text()), schema=S)


def downgrade() -> None:
    op.drop_column("deployments", "ca_bundle", schema=S)
