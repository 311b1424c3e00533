"""Security primitives shared by every context: permissions, roles, the principal, token hashing.

The permission table is the single place that says what each role may do; routes declare the one
permission they need (``opt={"permission": Permission.X}``) or that they are public
(``opt={"public": True}``), and the RBAC guard checks the request's principal against it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from enum import StrEnum

import msgspec


class Permission(StrEnum):
    """Every action a route can require."""

    ORG_READ = "org:read"
    ORG_MANAGE = "org:manage"
    MEMBERS_MANAGE = "members:manage"
    KEYS_MANAGE_OWN = "keys:manage_own"
    KEYS_MANAGE_ALL = "keys:manage_all"
    MODELS_INVOKE = "models:invoke"
    USAGE_READ = "usage:read"
    AUDIT_READ = "audit:read"
    PLATFORM_ADMIN = "platform:admin"
    # Any authenticated principal acting on itself (its profile, its session): granted to everyone signed in.
    SELF = "self"


class Scope(StrEnum):
    """What an API key may be used for, on top of its owner's role (a key never exceeds its owner)."""

    INFERENCE = "inference"
    MANAGEMENT_READ = "management:read"
    MANAGEMENT_WRITE = "management:write"


class OrgRole(StrEnum):
    """A member's role inside one organization."""

    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


_P = Permission
ROLE_PERMISSIONS: dict[OrgRole, frozenset[Permission]] = {
    OrgRole.VIEWER: frozenset({_P.ORG_READ, _P.USAGE_READ}),
    OrgRole.MEMBER: frozenset({_P.ORG_READ, _P.USAGE_READ, _P.KEYS_MANAGE_OWN, _P.MODELS_INVOKE}),
    OrgRole.ADMIN: frozenset({_P.ORG_READ, _P.USAGE_READ, _P.KEYS_MANAGE_OWN, _P.MODELS_INVOKE,
                              _P.KEYS_MANAGE_ALL, _P.MEMBERS_MANAGE, _P.AUDIT_READ}),
    OrgRole.OWNER: frozenset({_P.ORG_READ, _P.USAGE_READ, _P.KEYS_MANAGE_OWN, _P.MODELS_INVOKE,
                              _P.KEYS_MANAGE_ALL, _P.MEMBERS_MANAGE, _P.AUDIT_READ, _P.ORG_MANAGE}),
}
# A platform admin may do everything, in every organization.
PLATFORM_ADMIN_PERMISSIONS: frozenset[Permission] = frozenset(Permission)

# Each role holds every permission of the roles below it: what "more than the actor holds" means for roles.
ROLE_RANK: dict[OrgRole, int] = {OrgRole.VIEWER: 0, OrgRole.MEMBER: 1, OrgRole.ADMIN: 2, OrgRole.OWNER: 3}


def role_rank(role: OrgRole | None) -> int:
    """The rank of a role (-1 for none)."""
    return ROLE_RANK.get(role, -1) if role is not None else -1


def permissions_of(role: OrgRole | None, *, platform_admin: bool = False) -> frozenset[Permission]:
    """The permissions a role grants (all of them for a platform admin)."""
    if platform_admin:
        return PLATFORM_ADMIN_PERMISSIONS
    return ROLE_PERMISSIONS.get(role, frozenset()) if role is not None else frozenset()


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling, resolved from a bearer token (session or API key).

    For an API key every field is fixed by the key: its org, the creating user's (or service account's)
    role in that org, its scopes, model allow-list and limits. For a session ``org_id`` is None and
    the org comes from the route; ``org_role`` is then resolved per request.
    """

    kind: str  # "session" | "api_key"
    user_id: str | None
    org_id: str | None = None
    key_id: str | None = None
    org_role: OrgRole | None = None
    platform_admin: bool = False
    scopes: frozenset[str] = frozenset()
    allowed_models: frozenset[str] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    spend_limit_nusd: int | None = None  # an API key's monthly spend limit (nano-USD)
    expires_at: dt.datetime | None = None  # an API key's expiry

    def has(self, permission: Permission, *, write: bool = False) -> bool:
        """Whether this principal may use ``permission``: its role grants it and, for an API key, its scopes do.

        ``write`` asks for the management write scope of an API key (the guard sets it for unsafe methods).
        """
        if permission is Permission.SELF:
            return True
        if permission not in permissions_of(self.org_role, platform_admin=self.platform_admin):
            return False
        return self.kind != "api_key" or scope_allows(self.scopes, permission, write=write)

    def may_use_model(self, model: str) -> bool:
        """Whether the key's model allow-list (if any) admits ``model``."""
        return self.allowed_models is None or model in self.allowed_models


READ_PERMISSIONS: frozenset[Permission] = frozenset({Permission.ORG_READ, Permission.USAGE_READ,
                                                     Permission.AUDIT_READ, Permission.SELF})


def scope_allows(scopes: frozenset[str], permission: Permission, *, write: bool = False) -> bool:
    """Whether an API key's scopes admit ``permission`` (``write``: the request changes something)."""
    if permission is Permission.SELF:
        return True
    if permission is Permission.MODELS_INVOKE:
        return Scope.INFERENCE in scopes
    if Scope.MANAGEMENT_WRITE in scopes:
        return True
    return not write and permission in READ_PERMISSIONS | {Permission.KEYS_MANAGE_OWN, Permission.KEYS_MANAGE_ALL,
                                                           Permission.MEMBERS_MANAGE} \
        and Scope.MANAGEMENT_READ in scopes


# --- Tokens -------------------------------------------------------------------------------------------
# API keys look like OpenAI's: ``sk-`` then 43 URL-safe characters (256 random bits). Session tokens
# start with ``ses_``. Both are opaque; only their SHA-256 is ever stored.
API_KEY_PREFIX = "sk-"
SESSION_PREFIX = "ses_"
TOKEN_BODY_LENGTH = 43  # len(secrets.token_urlsafe(32))
DISPLAY_PREFIX_LENGTH = 12  # "sk-" and 9 characters: enough to tell keys apart in a list, useless to guess
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def new_api_key() -> str:
    """A fresh API key (``sk-`` + 256 random bits, URL-safe base64)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_session_token() -> str:
    """A fresh opaque session token (``ses_`` + 256 random bits)."""
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def display_prefix(api_key: str) -> str:
    """The short public part of a key shown in listings (``sk-AbCdEfGhI``)."""
    return api_key[:DISPLAY_PREFIX_LENGTH]


def token_kind(token: str) -> str | None:
    """``"api_key"``, ``"session"`` or None when ``token`` cannot be one of ours (checked before any lookup)."""
    for prefix, kind in ((API_KEY_PREFIX, "api_key"), (SESSION_PREFIX, "session")):
        if token.startswith(prefix):
            body = token[len(prefix):]
            if len(body) == TOKEN_BODY_LENGTH and _URLSAFE.issuperset(body):
                return kind
            return None
    return None


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when absent or malformed."""
    if not header or len(header) > 512:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def sha256_hex(token: str) -> str:
    """The SHA-256 of a token, as stored (API keys and session tokens are never stored in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()

