"""Redis keys of ``usage``: every key of one org's admission and settlement carries the org's hash tag."""

from __future__ import annotations

import datetime as dt

from aiaas.kernel.redis import Keys
from aiaas.usage import limiter


# Every key of one org's admission and settlement (the org's and its API keys') carries the org's hash tag,
# so the scripts that use them together run on a Redis Cluster too.
def window_keys(keys: Keys, org_id: str, scope: str, ident: str) -> tuple[str, str]:
    return keys.tagged("usage", org_id, "rl", scope, ident), keys.tagged("usage", org_id, "rl", scope, ident, "tok")


def quota_keys(keys: Keys, org_id: str, scope: str, ident: str, month: str) -> tuple[str, str]:
    return (keys.tagged("usage", org_id, "quota", scope, ident, month),
            keys.tagged("usage", org_id, "quota", scope, ident, month, "resv"))


def policy_key(keys: Keys, org_id: str) -> str:
    return keys.tagged("usage", org_id, "policy")


def quota_key(keys: Keys, org_id: str, scope: str, ident: str, at: dt.datetime) -> str:
    """The Redis hash holding ``used``/``reserved`` of a scope (the org, or one of its keys) for ``at``'s month."""
    return quota_keys(keys, org_id, scope, ident, limiter.month_key(at))[0]
