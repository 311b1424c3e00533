"""Usage policies: a monthly spend limit in USD beside the token budget (``monthly_spend_limit_usd``).

Nullable: every existing org keeps no spend limit.

Revision ID: usage_0003
Revises: usage_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "usage_0003"
down_revision = "usage_0002"
branch_labels = None
depends_on = None

S = "usage"


def upgrade() -> None:
    op.add_column("org_policies", sa.Column("monthly_spend_limit_usd", sa.Numeric(16, 9)), schema=S)


def downgrade() -> None:
    op.drop_column("org_policies", "monthly_spend_limit_usd", schema=S)
