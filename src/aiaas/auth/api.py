"""Public interface of the ``auth`` context: the only functions other contexts may call.

Functions here return frozen Structs, never ORM rows. Writes join the caller's ``auth`` unit of work.
"""

from __future__ import annotations

from aiaas.auth.principals import REFUSAL, PrincipalCache, Refused
from aiaas.auth.schemas import CreatedKey, Key, KeyCreate, KeyIdentity, Session, User
from aiaas.auth.service import (
    LastUsedRecorder,
    RoleLookup,
    create_service_account,
    create_user,
    disable_service_account,
    end_sessions_of,
    find_user_by_email,
    flush_last_used,
    forget_member,
    forget_member_after_commit,
    get_user,
    get_users,
    identify_api_key,
    list_audit,
    list_keys,
    revoke_org_keys,
    revoke_owner_keys,
    session_principal,
)
from aiaas.auth.service import create_key as create_key

__all__ = [
    "REFUSAL",
    "CreatedKey",
    "Key",
    "KeyCreate",
    "KeyIdentity",
    "LastUsedRecorder",
    "PrincipalCache",
    "Refused",
    "RoleLookup",
    "Session",
    "User",
    "create_key",
    "create_service_account",
    "create_user",
    "disable_service_account",
    "end_sessions_of",
    "find_user_by_email",
    "flush_last_used",
    "forget_member",
    "forget_member_after_commit",
    "get_user",
    "get_users",
    "identify_api_key",
    "list_audit",
    "list_keys",
    "revoke_org_keys",
    "revoke_owner_keys",
    "session_principal",
]
