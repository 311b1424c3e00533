"""Public interface of the ``orgs`` context: the only functions other contexts may call.

Functions here return frozen Structs, never ORM rows.
"""

from __future__ import annotations

from aiaas.orgs.schemas import Member, Org, ServiceAccount
from aiaas.orgs.service import add_member, create_org, find_owned_org, get_org, org_exists, role_of

__all__ = [
    "Member",
    "Org",
    "ServiceAccount",
    "add_member",
    "create_org",
    "find_owned_org",
    "get_org",
    "org_exists",
    "role_of",
]
