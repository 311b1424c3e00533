"""Usage ledger partitioned by month of ``occurred_at``; ``cached_prompt_tokens`` and ``reasoning_tokens``.

The table is rebuilt, every row kept: the old one is renamed, a parent ``PARTITION BY RANGE (occurred_at)``
is created with the primary key ``(event_id, occurred_at)`` (PostgreSQL wants the partition key in every
unique constraint), one partition ``requests_YYYYMM`` per UTC month of the existing rows plus the current
and the next month, the rows are copied and the old table dropped. The copy holds the ledger's lock for
its whole run: on a large ledger, run it while the workers are stopped (events wait in their queue).

The downgrade rebuilds the plain table from the partitions' rows; it loses the two new columns.

Revision ID: usage_0002
Revises: usage_0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "usage_0002"
down_revision = "usage_0001"
branch_labels = None
depends_on = None

S = "usage"

# The columns of usage_0001, copied as they are in both directions.
COLUMNS = ("event_id", "request_id", "org_id", "user_id", "key_id", "endpoint", "model", "deployment", "provider",
           "prompt_tokens", "completion_tokens", "total_tokens", "ttfb_ms", "latency_ms", "status", "http_status",
           "finish_reason", "error_type", "stream", "reservation_id", "started_at", "occurred_at", "recorded_at")


def _columns() -> list[sa.Column[object]]:
    return [
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
    ]


def _create_indexes() -> None:
    op.create_index("ix_requests_org_time", "requests", ["org_id", "occurred_at", "event_id"], schema=S)
    op.create_index("ix_requests_org_key_time", "requests", ["org_id", "key_id", "occurred_at"], schema=S)


def _drop_indexes() -> None:
    op.drop_index("ix_requests_org_key_time", "requests", schema=S)
    op.drop_index("ix_requests_org_time", "requests", schema=S)


def _create_partition(year: int, month: int) -> None:
    # The migration's own copy of repository.ensure_partitions' naming: a revision must not change with
    # the application code that comes after it.
    nxt_year, nxt_month = (year + 1, 1) if month == 12 else (year, month + 1)
    op.execute(
        f'CREATE TABLE IF NOT EXISTS {S}."requests_{year:04d}{month:02d}" PARTITION OF {S}.requests '
        f"FOR VALUES FROM ('{year:04d}-{month:02d}-01 00:00:00+00') "
        f"TO ('{nxt_year:04d}-{nxt_month:02d}-01 00:00:00+00')")


def upgrade() -> None:
    _drop_indexes()
    op.execute(f"ALTER TABLE {S}.requests RENAME CONSTRAINT pk_requests TO pk_requests_unpartitioned")
    # contract: a rebuild, not a removal: `requests` is re-created below under its own name with every
    # column the previous release reads and writes (the two new ones have server defaults).
    op.rename_table("requests", "requests_unpartitioned", schema=S)

    op.create_table(
        "requests",
        *_columns(),
        sa.Column("cached_prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reasoning_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("event_id", "occurred_at", name="pk_requests"),
        schema=S,
        postgresql_partition_by="RANGE (occurred_at)",
    )
    months = op.get_bind().execute(sa.text(
        "SELECT DISTINCT extract(year FROM t)::int, extract(month FROM t)::int FROM ("
        "  SELECT occurred_at AT TIME ZONE 'UTC' AS t FROM usage.requests_unpartitioned"
        "  UNION ALL SELECT now() AT TIME ZONE 'UTC'"
        "  UNION ALL SELECT (now() AT TIME ZONE 'UTC') + interval '1 month') AS m")).all()
    for year, month in sorted(months):
        _create_partition(year, month)

    cols = ", ".join(COLUMNS)
    # S608: every name put into these statements is a constant of this file.
    op.execute(f"INSERT INTO {S}.requests ({cols}) SELECT {cols} FROM {S}.requests_unpartitioned")  # noqa: S608
    # contract: the old copy, its rows now in the partitioned `requests`; no release reads it by this name.
    op.drop_table("requests_unpartitioned", schema=S)
    _create_indexes()


def downgrade() -> None:
    _drop_indexes()
    op.execute(f"ALTER TABLE {S}.requests RENAME CONSTRAINT pk_requests TO pk_requests_partitioned")
    op.rename_table("requests", "requests_partitioned", schema=S)

    op.create_table("requests", *_columns(), sa.PrimaryKeyConstraint("event_id", name="pk_requests"), schema=S)
    cols = ", ".join(COLUMNS)
    # An event id is in one month only (its occurred_at never changes); ON CONFLICT only guards the rule.
    op.execute(f"INSERT INTO {S}.requests ({cols}) SELECT {cols} FROM {S}.requests_partitioned "  # noqa: S608
               "ON CONFLICT (event_id) DO NOTHING")
    op.drop_table("requests_partitioned", schema=S)  # and every partition with it
    _create_indexes()
