"""HTTP routes of ``orgs``: organizations, members, service accounts and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import api as auth_api
from aiaas.kernel.audit import AuditFilter
from aiaas.kernel.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor, is_uuid
from aiaas.kernel.redis import Keys, RedisClient
from aiaas.kernel.security import OrgRole, Permission, Principal
from aiaas.orgs import service
from aiaas.orgs.schemas import (
    AuditPage,
    Member,
    MemberAdd,
    MemberPage,
    MemberUpdate,
    Org,
    OrgCreate,
    OrgPage,
    OrgUpdate,
    ServiceAccount,
    ServiceAccountCreate,
    ServiceAccountPage,
)

P = Permission
Filter = Annotated[str | None, Parameter(max_length=200)]
IdFilter = Annotated[str | None, Parameter(max_length=64)]


class OrgController(Controller):
    """Organizations: create (you become owner), list yours, read, rename (owners), delete (owners)."""

    path = "/v1/orgs"
    tags = ["organizations"]

    @post("/", opt={"permission": P.SELF})
    async def create_org(self, data: OrgCreate, request: Request[Any, Any, Any], principal: Principal,
                         orgs_session: AsyncSession, redis: RedisClient, keys: Keys) -> Response[Org]:
        """Create an organization; the signed-in user becomes its owner. Honours `Idempotency-Key`."""
        from aiaas.kernel.errors import Forbidden
        from aiaas.kernel.idempotency import idempotent

        if principal.kind != "session" or principal.user_id is None:
            raise Forbidden("Organizations are created by people signed in with a session, not by API keys.",
                            code="session_required")
        return await idempotent(
            request, principal=principal, redis=redis, keys=keys, context="orgs", session=orgs_session,
            produce=lambda: service.create_org(orgs_session, name=data.name, owner_id=principal.user_id or "",
                                               actor=principal))

    @get("/", opt={"permission": P.SELF})
    async def list_orgs(self, principal: Principal, orgs_session: AsyncSession, limit: Limit = DEFAULT_LIMIT,
                        cursor: Cursor = None, name: Filter = None) -> OrgPage:
        """Organizations you belong to, in creation order; filter by part of the name."""
        items, more = await service.list_orgs(orgs_session, actor=principal, after_id=decode_cursor(cursor),
                                              limit=limit, name=name)
        return OrgPage(data=items, next_cursor=encode_cursor(items[-1].id) if more else None, has_more=more)

    @get("/{org_id:str}", opt={"permission": P.ORG_READ})
    async def get_org(self, org_id: str, principal: Principal, orgs_session: AsyncSession) -> Org:
        """One organization and your role in it."""
        return await service.get_org(orgs_session, org_id=org_id, role=principal.org_role)

    @patch("/{org_id:str}", opt={"permission": P.ORG_MANAGE})
    async def rename_org(self, org_id: str, data: OrgUpdate, principal: Principal,
                         orgs_session: AsyncSession) -> Org:
        """Rename the organization (owners)."""
        return await service.rename_org(orgs_session, org_id=org_id, name=data.name, actor=principal)

    @delete("/{org_id:str}", opt={"permission": P.ORG_MANAGE}, status_code=204)
    async def delete_org(self, org_id: str, principal: Principal, orgs_session: AsyncSession,
                         auth_session: AsyncSession, principal_cache: auth_api.PrincipalCache) -> None:
        """Delete the organization (owners; soft delete): it answers 404 afterwards and its keys are revoked."""
        await service.delete_org(orgs_session, auth_session, principal_cache, org_id=org_id, actor=principal)


class MemberController(Controller):
    """Members of an organization: listed by every member, managed by owners and admins."""

    path = "/v1/orgs/{org_id:str}/members"
    tags = ["members"]

    @get("/", opt={"permission": P.ORG_READ})
    async def list_members(self, org_id: str, orgs_session: AsyncSession, auth_session: AsyncSession,
                           limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                           role: OrgRole | None = None) -> MemberPage:
        """Members in joining order; filter by role."""
        items, more = await service.list_members(orgs_session, auth_session, org_id=org_id,
                                                 after_id=decode_cursor(cursor), limit=limit, role=role)
        # The cursor is the membership order; members are keyed by user id, so page by the last row seen.
        next_cursor = None
        if more and items:
            next_cursor = await _member_cursor(orgs_session, org_id, items[-1].user_id)
        return MemberPage(data=items, next_cursor=next_cursor, has_more=more)

    @post("/", opt={"permission": P.MEMBERS_MANAGE})
    async def add_member(self, org_id: str, data: MemberAdd, request: Request[Any, Any, Any],
                         principal: Principal, orgs_session: AsyncSession, auth_session: AsyncSession,
                         redis: RedisClient, keys: Keys) -> Response[Member]:
        """Add an existing user by email with a role (only owners grant `owner`). Honours `Idempotency-Key`."""
        from aiaas.kernel.idempotency import idempotent

        return await idempotent(
            request, principal=principal, redis=redis, keys=keys, context="orgs", session=orgs_session,
            produce=lambda: service.add_member(orgs_session, auth_session, org_id=org_id, email=data.email,
                                               role=data.role, actor=principal))

    @patch("/{user_id:str}", opt={"permission": P.MEMBERS_MANAGE})
    async def change_role(self, org_id: str, user_id: str, data: MemberUpdate, principal: Principal,
                          orgs_session: AsyncSession, auth_session: AsyncSession,
                          principal_cache: auth_api.PrincipalCache) -> Member:
        """Change a member's role; the org always keeps an owner. Effective on every replica at once."""
        return await service.change_role(orgs_session, auth_session, principal_cache, org_id=org_id,
                                         user_id=user_id, role=data.role, actor=principal)

    @delete("/{user_id:str}", opt={"permission": P.MEMBERS_MANAGE}, status_code=204)
    async def remove_member(self, org_id: str, user_id: str, principal: Principal, orgs_session: AsyncSession,
                            auth_session: AsyncSession, principal_cache: auth_api.PrincipalCache) -> None:
        """Remove a member; its keys in this org are revoked at once."""
        await service.remove_member(orgs_session, auth_session, principal_cache, org_id=org_id, user_id=user_id,
                                    actor=principal)


async def _member_cursor(orgs_session: AsyncSession, org_id: str, user_id: str) -> str | None:
    from aiaas.orgs import repository

    m = await repository.membership(orgs_session, org_id, user_id)
    return encode_cursor(str(m.id)) if m else None


class ServiceAccountController(Controller):
    """Service accounts: identities of the org that hold API keys, so production apps do not depend on a person."""

    path = "/v1/orgs/{org_id:str}/service-accounts"
    tags = ["service accounts"]

    @post("/", opt={"permission": P.MEMBERS_MANAGE})
    async def create(self, org_id: str, data: ServiceAccountCreate, request: Request[Any, Any, Any],
                     principal: Principal, orgs_session: AsyncSession, auth_session: AsyncSession, redis: RedisClient,
                     keys: Keys) -> Response[ServiceAccount]:
        """Create a service account with a role (not owner); then issue keys for it under `/keys`."""
        from aiaas.kernel.idempotency import idempotent

        return await idempotent(
            request, principal=principal, redis=redis, keys=keys, context="orgs", session=orgs_session,
            produce=lambda: service.create_service_account(orgs_session, auth_session, org_id=org_id,
                                                           name=data.name, role=data.role, actor=principal))

    @get("/", opt={"permission": P.ORG_READ})
    async def list(self, org_id: str, orgs_session: AsyncSession, auth_session: AsyncSession,
                   limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> ServiceAccountPage:
        """Service accounts of the org."""
        items, more = await service.list_service_accounts(orgs_session, auth_session, org_id=org_id,
                                                          after_id=decode_cursor(cursor), limit=limit)
        next_cursor = await _member_cursor(orgs_session, org_id, items[-1].id) if more and items else None
        return ServiceAccountPage(data=items, next_cursor=next_cursor, has_more=more)

    @delete("/{user_id:str}", opt={"permission": P.MEMBERS_MANAGE}, status_code=204)
    async def delete(self, org_id: str, user_id: str, principal: Principal, orgs_session: AsyncSession,
                     auth_session: AsyncSession, principal_cache: auth_api.PrincipalCache) -> None:
        """Delete a service account; its keys are revoked at once."""
        await service.delete_service_account(orgs_session, auth_session, principal_cache, org_id=org_id,
                                             user_id=user_id, actor=principal)


def _audit_filter(org_id: str | None, cursor: str | None, limit: int, action: str | None, actor_user_id: str | None,
                  target_id: str | None) -> AuditFilter:
    return AuditFilter(org_id=org_id, before_id=decode_cursor(cursor), limit=limit, action=action,
                       actor_user_id=actor_user_id if actor_user_id and is_uuid(actor_user_id) else
                       ("00000000-0000-0000-0000-000000000000" if actor_user_id else None),
                       target_id=target_id)


class AuditController(Controller):
    """The audit log of management writes: who did what to which target, in which request."""

    tags = ["audit"]

    @get("/v1/orgs/{org_id:str}/audit", opt={"permission": P.AUDIT_READ})
    async def org_audit(self, org_id: str, orgs_session: AsyncSession, auth_session: AsyncSession,
                        limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None, action: Filter = None,
                        actor_user_id: IdFilter = None, target_id: IdFilter = None) -> AuditPage:
        """The org's audit log, newest first (owners and admins); filter by action, actor or target."""
        items, more = await service.list_audit(orgs_session, auth_session,
                                               _audit_filter(org_id, cursor, limit, action, actor_user_id, target_id))
        return AuditPage(data=items, next_cursor=encode_cursor(items[-1].id) if more else None, has_more=more)

    @get("/v1/admin/audit", opt={"permission": P.PLATFORM_ADMIN})
    async def platform_audit(self, orgs_session: AsyncSession, auth_session: AsyncSession,
                             limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None, org_id: IdFilter = None,
                             action: Filter = None, actor_user_id: IdFilter = None,
                             target_id: IdFilter = None) -> AuditPage:
        """Every audit entry of the platform, newest first (platform admins)."""
        if org_id is not None and not is_uuid(org_id):
            return AuditPage(data=[], next_cursor=None, has_more=False)
        items, more = await service.list_audit(orgs_session, auth_session,
                                               _audit_filter(org_id, cursor, limit, action, actor_user_id, target_id))
        return AuditPage(data=items, next_cursor=encode_cursor(items[-1].id) if more else None, has_more=more)

    @get("/v1/admin/orgs", opt={"permission": P.PLATFORM_ADMIN})
    async def all_orgs(self, principal: Principal, orgs_session: AsyncSession, limit: Limit = DEFAULT_LIMIT,
                       cursor: Cursor = None, name: Filter = None) -> OrgPage:
        """Every live organization of the platform (platform admins)."""
        items, more = await service.list_orgs(orgs_session, actor=principal, after_id=decode_cursor(cursor),
                                              limit=limit, name=name, everything=True)
        return OrgPage(data=items, next_cursor=encode_cursor(items[-1].id) if more else None, has_more=more)


ROUTERS = [OrgController, MemberController, ServiceAccountController, AuditController]
