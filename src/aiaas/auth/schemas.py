"""Request and response Structs of the ``auth`` context (also returned by ``auth.api``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import msgspec

from aiaas.kernel.security import Scope
from aiaas.kernel.text import label

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"^[^@\s\x00-\x1f]{{1,64}}@{_LABEL}(?:\.{_LABEL})+\Z"
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=EMAIL_PATTERN,
                                    description="An email address.")]
# bcrypt reads at most 72 bytes; longer passwords are refused explicitly (see service.check_password_rules).
Password = Annotated[str, msgspec.Meta(min_length=12, max_length=72,
                                       description="12 to 72 characters (at most 72 bytes in UTF-8).")]
LoginPassword = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Name = label(max_length=200, description="1 to 200 characters, no control characters.")
ModelName = label(max_length=200)
# The key's columns are 32-bit integers; 2^31 - 1 requests or tokens a minute is beyond any real limit.
PositiveLimit = Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Email and password of a person."""

    email: label(max_length=320)  # type: ignore[valid-type]
    password: LoginPassword


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A person or a service account. Never carries a password or its hash."""

    id: str
    email: str
    name: str
    kind: str  # "person" | "service_account"
    platform_admin: bool
    created_at: dt.datetime
    disabled: bool = False
    service_org_id: str | None = None


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """A new session: the opaque bearer token, shown once, and when it expires."""

    token: str
    token_type: str
    expires_in: int
    user: User


class UserCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new person account (created by a platform admin)."""

    email: Email
    password: Password
    name: label(max_length=200, min_length=0) = ""  # type: ignore[valid-type]
    platform_admin: bool = False


class UserPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of users."""

    data: list[User]
    next_cursor: str | None
    has_more: bool


class KeyCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new API key of the org: for the caller, or (org admins) for one of the org's service accounts."""

    name: Name
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: [Scope.INFERENCE])
    # Left out (``UNSET``): none for a person's or a service account's key, and the creating key's own
    # value when a key creates a key; ``null``: none (refused when the creating key has one).
    allowed_models: Annotated[list[ModelName], msgspec.Meta(max_length=200)] | msgspec.UnsetType | None = msgspec.UNSET
    rpm_limit: PositiveLimit | msgspec.UnsetType | None = msgspec.UNSET
    tpm_limit: PositiveLimit | msgspec.UnsetType | None = msgspec.UNSET
    # USD per UTC month, at most 9 decimals; charged like the org's limit (the org's applies as well).
    monthly_spend_limit_usd: Decimal | msgspec.UnsetType | None = msgspec.UNSET
    expires_at: dt.datetime | msgspec.UnsetType | None = msgspec.UNSET
    service_account_id: str | None = None


class KeyRotate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long the old key keeps working after the new one is issued (0 = revoke it now)."""

    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 86_400)] = 86_400


class Key(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed: its public prefix only, never the secret or its hash."""

    id: str
    org_id: str
    owner_id: str
    created_by: str | None
    name: str
    prefix: str
    scopes: list[str]
    allowed_models: list[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    monthly_spend_limit_usd: str | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    rotated_from: str | None
    created_at: dt.datetime
    status: str  # "active" | "expired" | "revoked"


class CreatedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A newly issued key: ``key`` is the secret, shown this once and never again."""

    key: str
    api_key: Key


class KeyPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of API keys."""

    data: list[Key]
    next_cursor: str | None
    has_more: bool


class KeyIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What a valid API key says about its caller (the org role is added by ``orgs``)."""

    key_id: str
    org_id: str
    owner_id: str
    scopes: frozenset[str]
    allowed_models: frozenset[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    spend_limit_nusd: int | None = None  # the key's monthly spend limit in nano-USD
    expires_at: dt.datetime | None
