"""Alembic environment: every context's MetaData, each on its own schema.

``aiaas migrate`` hands over an open connection (holding the advisory lock) in
``config.attributes["connection"]``; running Alembic by hand without one is not supported.
"""

from __future__ import annotations

from alembic import context

from aiaas.analytics.models import Base as AnalyticsBase
from aiaas.auth.models import Base as AuthBase
from aiaas.inference.models import Base as InferenceBase
from aiaas.orgs.models import Base as OrgsBase
from aiaas.usage.models import Base as UsageBase

target_metadata = [
    AuthBase.metadata,
    OrgsBase.metadata,
    InferenceBase.metadata,
    UsageBase.metadata,
    AnalyticsBase.metadata,
]

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `aiaas migrate`")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    include_schemas=True,
    version_table_schema="public",
    compare_type=True,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
