"""HTTP routes of ``auth``: login and logout, the caller's profile, users (platform admins) and API keys."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from aiaas.auth import service
from aiaas.auth.principals import PrincipalCache
from aiaas.auth.schemas import (
    CreatedKey,
    Key,
    KeyCreate,
    KeyPage,
    KeyRotate,
    LoginRequest,
    Session,
    User,
    UserCreate,
    UserPage,
)
from aiaas.kernel.config import Settings
from aiaas.kernel.errors import NotFound
from aiaas.kernel.idempotency import idempotent
from aiaas.kernel.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from aiaas.kernel.redis import Keys, RedisClient
from aiaas.kernel.security import Permission, Principal, bearer_token

P = Permission
OrgId = Annotated[str, Parameter(description="Organization id.")]


class SessionController(Controller):
    """Sessions of people: log in with email and password, log out."""

    path = "/v1/auth"
    tags = ["auth"]

    @post("/login", opt={"public": True}, status_code=200, security=[])
    async def login(self, data: LoginRequest, request: Request[Any, Any, Any], auth_session: AsyncSession,
                    redis: RedisClient, keys: Keys, settings: Settings) -> Session:
        """Exchange email and password for an opaque session token (send it as `Authorization: Bearer`).

        Throttled per account and per client address: too many attempts answer 429 with `Retry-After`.
        """
        address = request.client.host if request.client else "unknown"
        return await service.login(auth_session, redis, keys, settings, email=data.email, password=data.password,
                                   address=address)

    @post("/logout", opt={"permission": P.SELF}, status_code=204)
    async def logout(self, request: Request[Any, Any, Any], principal: Principal, redis: RedisClient,
                     keys: Keys) -> None:
        """End the current session (API keys are revoked instead, under the org's keys)."""
        token = bearer_token(request.headers.get("authorization"))
        if principal.kind == "session" and token:
            await service.logout(redis, keys, token)


class UserController(Controller):
    """The caller's own profile, and the users of the platform (platform admins only)."""

    tags = ["users"]

    @get("/v1/users/me", opt={"permission": P.SELF})
    async def me(self, principal: Principal, auth_session: AsyncSession) -> User:
        """The signed-in user (for an API key: the person or service account owning it)."""
        user = await service.get_user(auth_session, principal.user_id or "")
        if user is None:
            raise NotFound("User not found.", code="user_not_found")
        return user

    @post("/v1/admin/users", opt={"permission": P.PLATFORM_ADMIN})
    async def create_user(self, data: UserCreate, request: Request[Any, Any, Any], principal: Principal,
                          auth_session: AsyncSession, settings: Settings, redis: RedisClient,
                          keys: Keys) -> Response[User]:
        """Create a person account (email + password). Honours `Idempotency-Key`."""
        return await idempotent(
            request, principal=principal, redis=redis, keys=keys, context="auth", session=auth_session,
            produce=lambda: service.create_user(auth_session, email=data.email, password=data.password,
                                                name=data.name, platform_admin=data.platform_admin,
                                                rounds=settings.bcrypt_rounds, actor=principal))

    @get("/v1/admin/users", opt={"permission": P.PLATFORM_ADMIN})
    async def list_users(self, auth_session: AsyncSession, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None,
                         email: Annotated[str | None, Parameter(max_length=320)] = None) -> UserPage:
        """Every user, in creation order; filter by part of the email."""
        users, more = await service.list_users(auth_session, after_id=decode_cursor(cursor), limit=limit,
                                               email_contains=email)
        return UserPage(data=users, next_cursor=encode_cursor(users[-1].id) if more else None, has_more=more)


class KeyController(Controller):
    """API keys of an org. Members manage their own keys; owners and admins manage every key of the org."""

    path = "/v1/orgs/{org_id:str}/keys"
    tags = ["api keys"]

    @post("/", opt={"permission": P.KEYS_MANAGE_OWN})
    async def create_key(self, org_id: str, data: KeyCreate, request: Request[Any, Any, Any],
                         principal: Principal, auth_session: AsyncSession, redis: RedisClient,
                         keys: Keys, member_roles: service.RoleLookup) -> Response[CreatedKey]:
        """Issue a key. The secret (`key`) is in this response only; store it now. Honours `Idempotency-Key`
        (a replay answers 409: the secret is never shown twice).

        Set `service_account_id` (org owners and admins) to give the key to one of the org's service accounts.
        A key never holds more than its creator: created with an API key, it gets at most that key's
        scopes, models, limits and lifetime (omitted ones are inherited), else 403 `privilege_escalation`.
        """
        return await idempotent(
            request, principal=principal, redis=redis, keys=keys, context="auth", session=auth_session,
            secret_field="key",  # noqa: S106 - the name of the field that holds the secret
            produce=lambda: service.create_key(auth_session, org_id=org_id, data=data, actor=principal,
                                               roles=member_roles))

    @get("/", opt={"permission": P.KEYS_MANAGE_OWN})
    async def list_keys(self, org_id: str, principal: Principal, auth_session: AsyncSession,
                        limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None, include_revoked: bool = False,
                        owner_id: Annotated[str | None, Parameter(max_length=64)] = None,
                        name: Annotated[str | None, Parameter(max_length=200)] = None) -> KeyPage:
        """Keys of the org in creation order (yours only, unless you manage all keys); never the secrets."""
        items, more = await service.list_keys(auth_session, org_id=org_id, actor=principal,
                                              after_id=decode_cursor(cursor), limit=limit,
                                              include_revoked=include_revoked, owner_id=owner_id, name=name)
        return KeyPage(data=items, next_cursor=encode_cursor(items[-1].id) if more else None, has_more=more)

    @get("/{key_id:str}", opt={"permission": P.KEYS_MANAGE_OWN})
    async def get_key(self, org_id: str, key_id: str, principal: Principal, auth_session: AsyncSession) -> Key:
        """One key (404 when it is not in this org or not yours to see)."""
        return await service.get_key(auth_session, org_id=org_id, key_id=key_id, actor=principal)

    @delete("/{key_id:str}", opt={"permission": P.KEYS_MANAGE_OWN}, status_code=200)
    async def revoke_key(self, org_id: str, key_id: str, principal: Principal, auth_session: AsyncSession,
                         principal_cache: PrincipalCache) -> Key:
        """Revoke a key: every replica refuses it from the next request on. Idempotent."""
        return await service.revoke_key(auth_session, principal_cache, org_id=org_id, key_id=key_id,
                                        actor=principal)

    @post("/{key_id:str}/rotate", opt={"permission": P.KEYS_MANAGE_OWN})
    async def rotate_key(self, org_id: str, key_id: str, data: KeyRotate, request: Request[Any, Any, Any],
                         principal: Principal, auth_session: AsyncSession, principal_cache: PrincipalCache,
                         redis: RedisClient, keys: Keys, member_roles: service.RoleLookup) -> Response[CreatedKey]:
        """Issue a successor with the same settings; the old key stays valid for `grace_seconds` (0 = revoke now).

        You receive the successor's secret, so a key that holds more than you (an owner's, for an admin) is
        403 `privilege_escalation`. Honours `Idempotency-Key` (a replay answers 409).
        """
        return await idempotent(
            request, principal=principal, redis=redis, keys=keys, context="auth", session=auth_session,
            secret_field="key",  # noqa: S106 - the name of the field that holds the secret
            produce=lambda: service.rotate_key(auth_session, principal_cache, org_id=org_id, key_id=key_id,
                                               grace_seconds=data.grace_seconds, actor=principal,
                                               roles=member_roles))


ROUTERS = [SessionController, UserController, KeyController]
