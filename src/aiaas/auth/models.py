"""Tables of the ``auth`` context, all in the ``auth`` PostgreSQL schema."""

from __future__ import annotations

from aiaas.kernel.db import context_base

Base = context_base("auth")
