"""Tables of the ``analytics`` context, all in the ``analytics`` PostgreSQL schema."""

from __future__ import annotations

from aiaas.kernel.db import context_base

Base = context_base("analytics")
