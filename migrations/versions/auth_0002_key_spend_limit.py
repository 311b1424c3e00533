"""API keys: a monthly spend limit in USD of their own (``api_keys.monthly_spend_limit_usd``).

Nullable: every existing key keeps no limit of its own (the org's still applies).

Revision ID: auth_0002
Revises: auth_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "auth_0002"
down_revision = "auth_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("monthly_spend_limit_usd", sa.Numeric(16, 9)), schema="auth")


def downgrade() -> None:
    op.drop_column("api_keys", "monthly_spend_limit_usd", schema="auth")
