"""Business rules of identity, in parts: passwords and users, service accounts, sessions and login, API keys
(and the invariant that no key holds more than whoever hands it out), last-used stamps.

Services never commit: writes join the caller's unit of work, and their audit entry is added to the same
transaction. Cache writes that take power away are made before the commit (write-ahead, see
``auth.principals``). Callers use the names re-exported here.
"""

from __future__ import annotations

from aiaas.auth.service.keys import (
    RoleLookup,
    check_within,
    create_key,
    forget_member,
    forget_member_after_commit,
    get_key,
    identify_api_key,
    key_out,
    key_status,
    list_keys,
    revoke_key,
    revoke_org_keys,
    revoke_owner_keys,
    rotate_key,
)
from aiaas.auth.service.last_used import LastUsedRecorder, flush_last_used, last_used_key
from aiaas.auth.service.service_accounts import create_service_account, disable_service_account
from aiaas.auth.service.sessions import end_sessions_of, login, logout, session_principal
from aiaas.auth.service.users import (
    BCRYPT_MAX_BYTES,
    MIN_PASSWORD_LENGTH,
    check_password_rules,
    create_user,
    find_user_by_email,
    get_user,
    get_users,
    hash_password,
    list_audit,
    list_users,
    normalize_email,
    user_out,
    verify_password,
)

__all__ = [
    "BCRYPT_MAX_BYTES",
    "MIN_PASSWORD_LENGTH",
    "LastUsedRecorder",
    "RoleLookup",
    "check_password_rules",
    "check_within",
    "create_key",
    "create_service_account",
    "create_user",
    "disable_service_account",
    "end_sessions_of",
    "find_user_by_email",
    "flush_last_used",
    "forget_member",
    "forget_member_after_commit",
    "get_key",
    "get_user",
    "get_users",
    "hash_password",
    "identify_api_key",
    "key_out",
    "key_status",
    "last_used_key",
    "list_audit",
    "list_keys",
    "list_users",
    "login",
    "logout",
    "normalize_email",
    "revoke_key",
    "revoke_org_keys",
    "revoke_owner_keys",
    "rotate_key",
    "session_principal",
    "user_out",
    "verify_password",
]
