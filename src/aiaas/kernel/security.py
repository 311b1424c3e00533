"""Security primitives shared by every context: permissions, roles, the principal, token hashing.

The permission table is the single place that says what each role may do; routes declare the one
permission they need (``opt={"permission": Permission.X}``) or that they are public
(``opt={"public": True}``), and the RBAC guard checks the request's principal against it.
"""

from __future__ import annotations

import hashlib
import hmac
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
    token_budget: int | None = None

    def has(self, permission: Permission) -> bool:
        """Whether this principal's role (in its org) grants ``permission``."""
        return permission in permissions_of(self.org_role, platform_admin=self.platform_admin)

    def may_use_model(self, model: str) -> bool:
        """Whether the key's model allow-list (if any) admits ``model``."""
        return self.allowed_models is None or model in self.allowed_models


def sha256_hex(token: str) -> str:
    """The SHA-256 of a token, as stored (API keys and session tokens are never stored in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking their common prefix through timing."""
    return hmac.compare_digest(a.encode(), b.encode())
