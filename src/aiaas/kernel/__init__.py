"""Shared kernel: configuration, database, Redis, broker, errors, observability, security primitives.

No business rules live here."""
