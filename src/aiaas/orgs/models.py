"""Tables of the ``orgs`` context, all in the ``orgs`` PostgreSQL schema."""

from __future__ import annotations

from aiaas.kernel.db import context_base

Base = context_base("orgs")
