"""Tables of the ``inference`` context, all in the ``inference`` PostgreSQL schema."""

from __future__ import annotations

from aiaas.kernel.db import context_base

Base = context_base("inference")
