"""auth: users, API keys, audit events.

Revision ID: auth_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "auth_0001"
down_revision = "0001"
branch_labels = ("auth",)
depends_on = None

S = "auth"
UUID = sa.Uuid(as_uuid=False)
TS = sa.DateTime(timezone=True)


def _audit(schema: str) -> None:
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
        schema=schema,
    )
    op.create_index("ix_audit_events_org_id", "audit_events", ["org_id"], schema=schema)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", UUID, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(100)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("service_org_id", UUID),
        sa.Column("platform_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("disabled_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        schema=S,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", UUID, nullable=False),
        sa.Column("org_id", UUID, nullable=False),
        sa.Column("owner_id", UUID, nullable=False),
        sa.Column("created_by", UUID),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("allowed_models", postgresql.ARRAY(sa.String(200))),
        sa.Column("rpm_limit", sa.Integer()),
        sa.Column("tpm_limit", sa.Integer()),
        sa.Column("expires_at", TS),
        sa.Column("revoked_at", TS),
        sa.Column("last_used_at", TS),
        sa.Column("rotated_from", UUID),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        schema=S,
    )
    op.create_index("ix_api_keys_org_id_owner_id", "api_keys", ["org_id", "owner_id"], schema=S)
    _audit(S)


def downgrade() -> None:
    op.drop_table("audit_events", schema=S)
    op.drop_table("api_keys", schema=S)
    op.drop_table("users", schema=S)
