"""orgs: organizations, memberships, audit events.

Revision ID: orgs_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "orgs_0001"
down_revision = "0001"
branch_labels = ("orgs",)
depends_on = None

S = "orgs"
UUID = sa.Uuid(as_uuid=False)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", UUID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_by", UUID),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        schema=S,
    )
    op.create_table(
        "memberships",
        sa.Column("id", UUID, nullable=False),
        sa.Column("org_id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
        sa.UniqueConstraint("org_id", "user_id", name="uq_memberships_org_id_user_id"),
        schema=S,
    )
    op.create_index("ix_memberships_org_id", "memberships", ["org_id"], schema=S)
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"], schema=S)
    op.create_table(
        "audit_events",
        sa.Column("id", UUID, nullable=False),
        sa.Column("org_id", UUID),
        sa.Column("actor_user_id", UUID),
        sa.Column("actor_key_id", UUID),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(64)),
        sa.Column("request_id", sa.String(128)),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("occurred_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        schema=S,
    )
    op.create_index("ix_audit_events_org_id", "audit_events", ["org_id"], schema=S)


def downgrade() -> None:
    op.drop_table("audit_events", schema=S)
    op.drop_table("memberships", schema=S)
    op.drop_table("organizations", schema=S)
