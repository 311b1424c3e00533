"""Tables of the ``usage`` context, all in the ``usage`` PostgreSQL schema."""

from __future__ import annotations

from aiaas.kernel.db import context_base

Base = context_base("usage")
