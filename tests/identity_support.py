"""Real identities for tests of other contexts: users, orgs, memberships and API keys made through the
identity services (never a stand-in principal)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from litestar.testing import AsyncTestClient

from aiaas.auth import api as auth_api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.security import OrgRole, Principal, Scope
from aiaas.orgs import api as orgs_api
from support import FIXTURE_BCRYPT_ROUNDS

PASSWORD = "correct horse battery staple"  # pragma: allowlist secret


@dataclass
class Actor:
    """A person signed in through the API: a session token, and an API key of theirs when they hold one."""

    email: str
    user_id: str
    token: str  # session token
    key: str | None = None  # an API key in the actor's org (all scopes)
    key_id: str | None = None


@dataclass
class Tenant:
    """An org and its people by role."""

    org_id: str
    actors: dict[str, Actor] = field(default_factory=dict)


@dataclass
class Key:
    secret: str
    id: str
    user_id: str


@dataclass
class Org:
    id: str
    owner_id: str
    keys: dict[str, Key] = field(default_factory=dict)


async def person(container: Container, *, label: str = "u", platform_admin: bool = False) -> Any:
    """A new person with ``PASSWORD``."""
    email = f"{label}-{uuid.uuid4().hex[:10]}@example.com"
    async with container.db.unit_of_work("auth") as s:
        return await auth_api.create_user(s, email=email, password=PASSWORD, platform_admin=platform_admin,
                                          rounds=FIXTURE_BCRYPT_ROUNDS, actor=None)


async def api_key(container: Container, *, user_id: str, org_id: str, role: OrgRole,
                  scopes: list[Scope] | None = None, **kw: Any) -> Key:
    """An API key of ``user_id`` (who holds ``role`` in ``org_id``)."""
    actor = Principal(kind="session", user_id=user_id, org_id=org_id, org_role=role)
    async with container.db.unit_of_work("auth") as s:
        made = await auth_api.create_key(s, org_id=org_id, actor=actor, data=auth_api.KeyCreate(
            name="test", scopes=scopes or [Scope.INFERENCE, Scope.MANAGEMENT_READ, Scope.MANAGEMENT_WRITE], **kw))
    return Key(secret=made.key, id=made.api_key.id, user_id=user_id)


async def org_with_keys(container: Container, *, members: dict[str, OrgRole], **key_kw: Any) -> Org:
    """An org whose owner holds key ``"owner"``, plus one member (and key) per entry of ``members``."""
    owner = await person(container, label="owner")
    async with container.db.unit_of_work("orgs") as o:
        org = await orgs_api.create_org(o, name=f"org-{uuid.uuid4().hex[:6]}", owner_id=owner.id,
                                        actor=Principal(kind="session", user_id=owner.id))
    result = Org(id=org.id, owner_id=owner.id)
    result.keys["owner"] = await api_key(container, user_id=owner.id, org_id=org.id, role=OrgRole.OWNER, **key_kw)
    as_owner = Principal(kind="session", user_id=owner.id, org_id=org.id, org_role=OrgRole.OWNER)
    for name, role in members.items():
        user = await person(container, label=name)
        async with container.db.unit_of_work("orgs") as o, container.db.unit_of_work("auth") as a:
            await orgs_api.add_member(o, a, org_id=org.id, email=user.email, role=role, actor=as_owner)
        result.keys[name] = await api_key(container, user_id=user.id, org_id=org.id, role=role, **key_kw)
    return result


async def session_token(client: AsyncTestClient[Any], email: str) -> str:
    """Log ``email`` in through the API and return the session token."""
    r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
