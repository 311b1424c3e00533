"""Audit log, idempotent creation, service accounts, pagination, login throttling and last-used stamps."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from aiaas.auth import api as auth_api
from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings

from .conftest import PASSWORD, World, app_client, bearer, make_tenant, new_user


class TestAuditLog:
    async def test_writes_are_recorded_with_actor_and_request(self, world: World,
                                                              module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "audited"},
                                  headers={**bearer(owner.token), "x-request-id": "req-audit-1"})
        key_id, secret = r.json()["api_key"]["id"], r.json()["key"]
        await module_api.delete(f"/v1/orgs/{world.a.org_id}/keys/{key_id}", headers=bearer(owner.token))
        page = (await module_api.get(f"/v1/orgs/{world.a.org_id}/audit?target_id={key_id}",
                                     headers=bearer(owner.token))).json()
        actions = [e["action"] for e in page["data"]]
        assert actions == ["key.revoke", "key.create"]  # newest first
        created = page["data"][1]
        assert created["actor_user_id"] == owner.user_id and created["org_id"] == world.a.org_id
        assert created["request_id"] == "req-audit-1" and created["details"]["name"] == "audited"
        assert secret not in str(page) and created["details"]["prefix"] == secret[:12]  # only the display prefix

    async def test_membership_and_org_writes_are_recorded(self, world: World,
                                                          module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.get(f"/v1/orgs/{world.a.org_id}/audit?action=member.add&limit=100",
                                 headers=bearer(owner.token))
        added = {e["target_id"] for e in r.json()["data"]}
        assert {world.a.actors[x].user_id for x in ("admin", "member", "viewer")} <= added
        r = await module_api.get(f"/v1/orgs/{world.a.org_id}/audit?action=org.create",
                                 headers=bearer(owner.token))
        assert [e["target_id"] for e in r.json()["data"]] == [world.a.org_id]

    async def test_pagination_is_stable_and_complete(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        url = f"/v1/orgs/{world.a.org_id}/audit"
        everything = (await module_api.get(url + "?limit=100", headers=bearer(owner.token))).json()["data"]
        seen: list[str] = []
        cursor = None
        while True:
            q = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
            page = (await module_api.get(url + q, headers=bearer(owner.token))).json()
            seen += [e["id"] for e in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert seen[: len(everything)] == [e["id"] for e in everything][: len(seen)]
        assert len(seen) == len(set(seen)) and seen == sorted(seen, reverse=True)

    async def test_platform_admin_sees_every_org(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        data = (await module_api.get("/v1/admin/audit?limit=100&action=org.create",
                                     headers=bearer(world.admin.token))).json()["data"]
        orgs = {e["org_id"] for e in data}
        assert {world.a.org_id, world.b.org_id} <= orgs
        only_b = (await module_api.get(f"/v1/admin/audit?org_id={world.b.org_id}",
                                       headers=bearer(world.admin.token))).json()["data"]
        assert only_b and {e["org_id"] for e in only_b} == {world.b.org_id}


class TestIdempotency:
    async def test_retry_replays_the_first_response(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        headers = {**bearer(owner.token), "Idempotency-Key": f"org-{uuid.uuid4()}"}
        name = f"idem-{uuid.uuid4().hex[:8]}"
        first = await module_api.post("/v1/orgs", json={"name": name}, headers=headers)
        again = await module_api.post("/v1/orgs", json={"name": name}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        orgs = (await module_api.get("/v1/orgs?limit=100", headers=bearer(owner.token))).json()["data"]
        assert len([o for o in orgs if o["name"] == name]) == 1

    async def test_a_key_secret_is_never_replayed_nor_kept(self, world: World, module_api: AsyncTestClient[Any],
                                                           container: Container) -> None:
        member = world.a.actors["member"]
        idem = f"create-{uuid.uuid4()}"
        headers = {**bearer(member.token), "Idempotency-Key": idem}
        first = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "once"}, headers=headers)
        assert first.status_code == 201
        secret = first.json()["key"]
        again = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "once"}, headers=headers)
        assert again.status_code == 409, again.text
        doc = again.json()
        assert doc["code"] == "idempotency_secret_unavailable"
        assert doc["result"]["api_key"]["id"] == first.json()["api_key"]["id"]  # what was made, to revoke it
        assert secret not in again.text and "key" not in doc["result"]
        # The stored first response holds no secret either.
        stored = [await container.redis.get(k) async for k in container.redis.scan_iter(
            match=f"{container.keys.prefix}auth:idem:*", count=1000)]
        assert stored and not any(secret.encode() in (v or b"") for v in stored)
        keys = (await module_api.get(f"/v1/orgs/{world.a.org_id}/keys?name=once&limit=100",
                                     headers=bearer(member.token))).json()["data"]
        assert len([k for k in keys if k["name"] == "once"]) == 1

    async def test_same_key_other_body_is_refused(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        member = world.a.actors["member"]
        headers = {**bearer(member.token), "Idempotency-Key": f"k-{uuid.uuid4()}"}
        assert (await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "a"},
                                      headers=headers)).status_code == 201
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "b"}, headers=headers)
        assert r.status_code == 422

    async def test_keys_are_per_principal(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        idem = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
        a = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "p"},
                                  headers={**bearer(world.a.actors["member"].token), **idem})
        b = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", json={"name": "p"},
                                  headers={**bearer(world.a.actors["admin"].token), **idem})
        assert a.status_code == b.status_code == 201 and a.json()["key"] != b.json()["key"]

    async def test_failed_request_can_be_retried(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        headers = {**bearer(owner.token), "Idempotency-Key": f"m-{uuid.uuid4()}"}
        email, _ = await new_user_via_api(module_api, world)
        body = {"email": "nobody-" + email}
        assert (await module_api.post(f"/v1/orgs/{world.a.org_id}/members", json=body,
                                      headers=headers)).status_code == 404
        assert (await module_api.post(f"/v1/orgs/{world.a.org_id}/members", json=body,
                                      headers=headers)).status_code == 404


async def new_user_via_api(client: AsyncTestClient[Any], world: World) -> tuple[str, str]:
    email = f"v-{uuid.uuid4().hex[:10]}@example.com"
    r = await client.post("/v1/admin/users", json={"email": email, "password": PASSWORD},
                          headers=bearer(world.admin.token))
    assert r.status_code == 201, r.text
    body = r.json()
    assert "password" not in str(body).lower() and "$2b$" not in r.text
    return email, body["id"]


class TestServiceAccounts:
    async def test_service_account_keys_outlive_their_creator(self, world: World, container: Container,
                                                              module_api: AsyncTestClient[Any]) -> None:
        tenant = await make_tenant(container, module_api)
        admin = tenant.actors["admin"]
        r = await module_api.post(f"/v1/orgs/{tenant.org_id}/service-accounts", json={"name": "prod-app"},
                                  headers=bearer(admin.token))
        assert r.status_code == 201, r.text
        sa = r.json()
        assert sa["role"] == "member"
        r = await module_api.post(f"/v1/orgs/{tenant.org_id}/keys", headers=bearer(admin.token),
                                  json={"name": "prod", "service_account_id": sa["id"],
                                        "scopes": ["inference", "management:read"]})
        assert r.status_code == 201, r.text
        sa_key = r.json()["key"]
        assert r.json()["api_key"]["owner_id"] == sa["id"]
        # the admin who created it leaves: the service account's key keeps working
        owner = tenant.actors["owner"]
        r = await module_api.delete(f"/v1/orgs/{tenant.org_id}/members/{admin.user_id}", headers=bearer(owner.token))
        assert r.status_code == 204
        me = (await module_api.get("/v1/users/me", headers=bearer(sa_key))).json()
        assert me["kind"] == "service_account" and me["id"] == sa["id"]
        listed = (await module_api.get(f"/v1/orgs/{tenant.org_id}/service-accounts",
                                       headers=bearer(owner.token))).json()["data"]
        assert [s["id"] for s in listed] == [sa["id"]]
        # a member may not create keys for it
        r = await module_api.post(f"/v1/orgs/{tenant.org_id}/keys", headers=bearer(tenant.actors["member"].token),
                                  json={"name": "x", "service_account_id": sa["id"]})
        assert r.status_code == 403
        # deleting it revokes its keys
        r = await module_api.delete(f"/v1/orgs/{tenant.org_id}/service-accounts/{sa['id']}",
                                    headers=bearer(owner.token))
        assert r.status_code == 204
        assert (await module_api.get("/v1/users/me", headers=bearer(sa_key))).status_code == 401

    async def test_service_account_cannot_log_in_or_be_owner(self, world: World,
                                                             module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/service-accounts",
                                  json={"name": "x", "role": "owner"}, headers=bearer(owner.token))
        assert r.status_code == 403


class TestKeyListing:
    async def test_members_see_their_own_keys_admins_see_all(self, world: World,
                                                              module_api: AsyncTestClient[Any]) -> None:
        member, admin = world.a.actors["member"], world.a.actors["admin"]
        mine = (await module_api.get(f"/v1/orgs/{world.a.org_id}/keys?limit=100",
                                     headers=bearer(member.token))).json()["data"]
        assert mine and {k["owner_id"] for k in mine} == {member.user_id}
        everyone = (await module_api.get(f"/v1/orgs/{world.a.org_id}/keys?limit=100",
                                         headers=bearer(admin.token))).json()["data"]
        assert {member.user_id, admin.user_id} <= {k["owner_id"] for k in everyone}
        assert all("key" not in k and "key_hash" not in k and k["prefix"].startswith("sk-") for k in everyone)
        only = (await module_api.get(f"/v1/orgs/{world.a.org_id}/keys?owner_id={member.user_id}",
                                     headers=bearer(admin.token))).json()["data"]
        assert {k["owner_id"] for k in only} == {member.user_id}

    async def test_pages_in_creation_order(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.b.actors["owner"]
        for i in range(5):
            await module_api.post(f"/v1/orgs/{world.b.org_id}/keys", json={"name": f"page-{i}"},
                                  headers=bearer(owner.token))
        names: list[str] = []
        cursor = None
        while True:
            q = f"?limit=2&name=page-&owner_id={owner.user_id}" + (f"&cursor={cursor}" if cursor else "")
            page = (await module_api.get(f"/v1/orgs/{world.b.org_id}/keys{q}", headers=bearer(owner.token))).json()
            names += [k["name"] for k in page["data"]]
            if not page["has_more"]:
                break
            cursor = page["next_cursor"]
        assert names == [f"page-{i}" for i in range(5)]


class TestLoginThrottle:
    async def test_account_locks_after_failures(self, settings: Settings, container: Container) -> None:
        small = msgspec.structs.replace(settings, login_max_failures_per_account=3,
                                        login_max_attempts_per_address=1000)
        email, _ = await new_user(container)
        async for client in app_client("api", small):
            for _ in range(3):
                r = await client.post("/v1/auth/login", json={"email": email, "password": "wrong password!"})
                assert r.status_code == 401 and r.json()["detail"] == "Email or password is wrong."
            r = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 429
            assert int(r.headers["retry-after"]) > 0
            assert r.headers["content-type"].startswith("application/problem+json")

    async def test_address_is_throttled(self, settings: Settings) -> None:
        small = msgspec.structs.replace(settings, login_max_attempts_per_address=2,
                                        login_address_window_seconds=30)
        # Same window for every test client; use a unique prefix so other tests' attempts do not count.
        small = msgspec.structs.replace(small, redis_prefix=settings.redis_prefix + f"thr{uuid.uuid4().hex[:6]}:")
        async for client in app_client("api", small):
            for _ in range(2):
                r = await client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "x"})
                assert r.status_code == 401
            r = await client.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "x"})
            assert r.status_code == 429 and "retry-after" in r.headers

    async def test_unknown_and_wrong_password_look_the_same(self, world: World,
                                                            module_api: AsyncTestClient[Any]) -> None:
        a = await module_api.post("/v1/auth/login", json={"email": "ghost@example.com", "password": "x" * 12})
        b = await module_api.post("/v1/auth/login", json={"email": world.outsider.email, "password": "x" * 12})
        assert a.status_code == b.status_code == 401
        assert a.json()["detail"] == b.json()["detail"]


class TestLastUsed:
    async def test_use_is_stamped_off_the_request_path(self, world: World, container: Container) -> None:
        member = world.a.actors["member"]
        assert member.key_id
        recorder = auth_api.LastUsedRecorder(container.redis, container.keys, interval=0.01)
        now = time.time()
        recorder.record(member.key_id, now)
        await recorder.flush()
        async with container.db.unit_of_work("auth") as s:
            moved = await auth_api.flush_last_used(s, container.redis, container.keys)
        assert moved >= 1
        async with container.db.unit_of_work("auth") as s:
            key = await _key(s, world.a.org_id, member.key_id)
        assert key.last_used_at is not None and abs(key.last_used_at.timestamp() - now) < 1

    async def test_flush_with_nothing_pending(self, settings: Settings) -> None:
        own = Container(settings, role="api")  # keys of this test only: nothing anyone else stamped
        try:
            async with own.db.unit_of_work("auth") as s:
                assert await auth_api.flush_last_used(s, own.redis, own.keys) == 0
        finally:
            await own.stop()


async def _key(session: Any, org_id: str, key_id: str) -> Any:
    from aiaas.kernel.security import OrgRole, Principal

    keys, _ = await auth_api.list_keys(session, org_id=org_id, actor=Principal(
        kind="session", user_id=None, org_id=org_id, org_role=OrgRole.OWNER), after_id=None, limit=100)
    return next(k for k in keys if k.id == key_id)


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Any:
    yield
    text = caplog.text
    assert PASSWORD not in text and "$2b$" not in text


class TestKeySpendLimit:
    async def test_set_shown_checked_and_kept_on_rotation(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        member = world.a.actors["member"]
        url = f"/v1/orgs/{world.a.org_id}/keys"
        for bad in ("-1", "9000000.5", "0.0000000001", "NaN"):
            r = await module_api.post(url, json={"name": "spend-bad", "monthly_spend_limit_usd": bad},
                                      headers=bearer(member.token))
            assert r.status_code in (400, 422), (bad, r.text)
            assert "monthly_spend_limit_usd" in r.json()["detail"]
        r = await module_api.post(url, json={"name": "spend", "monthly_spend_limit_usd": "12.50"},
                                  headers=bearer(member.token))
        assert r.status_code == 201, r.text
        key = r.json()["api_key"]
        assert key["monthly_spend_limit_usd"] == "12.5"
        r = await module_api.post(f"{url}/{key['id']}/rotate", json={"grace_seconds": 0},
                                  headers=bearer(member.token))
        assert r.status_code == 201, r.text
        assert r.json()["api_key"]["monthly_spend_limit_usd"] == "12.5"
        plain = await module_api.post(url, json={"name": "no-spend"}, headers=bearer(member.token))
        assert plain.json()["api_key"]["monthly_spend_limit_usd"] is None
