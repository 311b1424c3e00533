"""Request and response Structs of the ``orgs`` context."""

from __future__ import annotations

import datetime as dt

import msgspec

from aiaas.kernel.audit import AuditEntry
from aiaas.kernel.security import OrgRole
from aiaas.kernel.text import label

OrgName = label(max_length=200, description="1 to 200 characters, no control characters.")


class Org(msgspec.Struct, frozen=True, kw_only=True):
    """An organization (tenant); ``role`` is the caller's role in it, when it has one."""

    id: str
    name: str
    created_at: dt.datetime
    role: OrgRole | None = None


class OrgCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new organization; its creator becomes its owner."""

    name: OrgName


class OrgUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Rename an organization."""

    name: OrgName


class OrgPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of organizations."""

    data: list[Org]
    next_cursor: str | None
    has_more: bool


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """A member of an org: a person or a service account, with its role."""

    user_id: str
    email: str
    name: str
    kind: str
    role: OrgRole
    joined_at: dt.datetime


class MemberAdd(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Add an existing user by email."""

    email: label(min_length=3, max_length=320)  # type: ignore[valid-type]
    role: OrgRole = OrgRole.MEMBER


class MemberUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Change a member's role."""

    role: OrgRole


class MemberPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of members."""

    data: list[Member]
    next_cursor: str | None
    has_more: bool


class ServiceAccountCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A service account: an identity of the org (not of a person) that holds API keys."""

    name: OrgName
    role: OrgRole = OrgRole.MEMBER


class ServiceAccount(msgspec.Struct, frozen=True, kw_only=True):
    """A service account of the org."""

    id: str
    name: str
    role: OrgRole
    created_at: dt.datetime


class ServiceAccountPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of service accounts."""

    data: list[ServiceAccount]
    next_cursor: str | None
    has_more: bool


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of audit entries, newest first."""

    data: list[AuditEntry]
    next_cursor: str | None
    has_more: bool
