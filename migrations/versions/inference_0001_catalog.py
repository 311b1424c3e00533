"""Inference catalog: models, deployments, org model access; seed the embedded local model.

Revision ID: inference_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "inference_0001"
down_revision = "0001"
branch_labels = ("inference",)
depends_on = None

S = "inference"
LOCAL_MODEL_ID = "00000000-0000-7000-8000-000000000270"
LOCAL_DEPLOYMENT_ID = "00000000-0000-7000-8000-000000000271"


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owned_by", sa.String(100), nullable=False),
        sa.Column("capabilities", pg.ARRAY(sa.Text()), nullable=False),
        sa.Column("context_length", sa.Integer()),
        sa.Column("managed_by", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
        schema=S,
    )
    op.create_table(
        "deployments",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("model_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("upstream_model", sa.String(256), nullable=False),
        sa.Column("base_url", sa.Text()),
        sa.Column("credential_ref", sa.String(200)),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("connect_timeout", sa.Float(), nullable=False),
        sa.Column("first_byte_timeout", sa.Float(), nullable=False),
        sa.Column("chunk_timeout", sa.Float(), nullable=False),
        sa.Column("total_timeout", sa.Float(), nullable=False),
        sa.Column("context_length", sa.Integer()),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.ForeignKeyConstraint(["model_id"], [f"{S}.models.id"], name="fk_deployments_model_id_models",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("model_id", "name", name="uq_deployments_model_id_name"),
        schema=S,
    )
    op.create_index("ix_deployments_model_id", "deployments", ["model_id"], schema=S)
    op.create_table(
        "org_model_access",
        sa.Column("org_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("models", pg.ARRAY(sa.Text())),
        sa.Column("managed_by", sa.String(10), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name="pk_org_model_access"),
        schema=S,
    )
    # A fresh install serves the embedded model, so the first request works without any upstream account.
    bind = op.get_bind()
    bind.execute(sa.text(
        "INSERT INTO inference.models (id, name, owned_by, capabilities, context_length, managed_by) "
        "VALUES (:id, 'local/gemma-3-270m', 'aiaas', ARRAY['chat','completions'], 2048, 'api') "
        "ON CONFLICT (name) DO NOTHING"), {"id": LOCAL_MODEL_ID})
    bind.execute(sa.text(
        "INSERT INTO inference.deployments (id, model_id, name, provider, upstream_model, base_url, "
        "credential_ref, weight, priority, connect_timeout, first_byte_timeout, chunk_timeout, total_timeout, "
        "context_length, enabled) SELECT :id, id, 'embedded', 'local', 'gemma-3-270m-q4_k_m', NULL, NULL, "
        "1, 0, 3, 120, 60, 600, 2048, true FROM inference.models WHERE name = 'local/gemma-3-270m' "
        "ON CONFLICT DO NOTHING"), {"id": LOCAL_DEPLOYMENT_ID})


def downgrade() -> None:
    op.drop_table("org_model_access", schema=S)
    op.drop_table("deployments", schema=S)
    op.drop_table("models", schema=S)
