"""``aiaas bootstrap``: the first platform admin, an org and an API key, through the services.

Idempotent: an existing admin and org are reused. A key's secret is shown only once, so a re-run issues
a new key (named ``bootstrap``) only with ``--new-key``; otherwise it prints that the admin exists.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiaas.auth import api as auth_api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings
from aiaas.kernel.security import OrgRole, Principal, Scope
from aiaas.orgs import api as orgs_api


@dataclass
class BootstrapResult:
    """What a bootstrap run did."""

    admin_email: str
    org_id: str
    api_key: str | None
    created_admin: bool
    created_org: bool
    generated_password: str | None


async def bootstrap(settings: Settings, *, email: str, password: str | None, org_name: str,
                    new_key: bool) -> BootstrapResult:
    """Create (or find) the admin, the org (admin as owner) and, on first run or ``new_key``, a key."""
    container = Container(settings, role="api")
    try:
        generated = None
        async with container.db.unit_of_work("auth") as a:
            admin = await auth_api.find_user_by_email(a, email)
            created_admin = admin is None
            if admin is None:
                if not password:
                    generated = password = secrets.token_urlsafe(18)
                admin = await auth_api.create_user(a, email=email, password=password, name="Platform admin",
                                                   platform_admin=True, rounds=settings.bcrypt_rounds, actor=None)
        actor = Principal(kind="session", user_id=admin.id, platform_admin=admin.platform_admin)
        async with container.db.unit_of_work("orgs") as o:
            org = await orgs_api.find_owned_org(o, name=org_name, owner_id=admin.id)
            created_org = org is None
            if org is None:
                org = await orgs_api.create_org(o, name=org_name, owner_id=admin.id, actor=actor)
        key = None
        if created_admin or created_org or new_key:
            owner = Principal(kind="session", user_id=admin.id, org_id=org.id, org_role=OrgRole.OWNER,
                              platform_admin=admin.platform_admin)
            async with container.db.unit_of_work("auth") as a:
                created = await auth_api.create_key(a, org_id=org.id, actor=owner, data=auth_api.KeyCreate(
                    name="bootstrap", scopes=[Scope.INFERENCE, Scope.MANAGEMENT_READ, Scope.MANAGEMENT_WRITE]))
            key = created.key
        return BootstrapResult(admin_email=admin.email, org_id=org.id, api_key=key, created_admin=created_admin,
                               created_org=created_org, generated_password=generated)
    finally:
        await container.redis.aclose()
        await container.db.dispose()
