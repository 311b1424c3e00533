"""One test per finding of the security review (docs/security.md lists each rule), against a running platform.

Each test attacks the way the finding was found and asserts the rule that now holds; each failed on the
code before its fix.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import msgspec
import pytest

from fake_upstream import FakeUpstream
from security.conftest import METRICS_TOKEN, PASSWORD, Platform, Tenant, problem
from support import free_port

pytestmark = [pytest.mark.e2e]

MSG = [{"role": "user", "content": "hi"}]


def _model(name: str, base_url: str, upstream_model: str = "fake", **dep: Any) -> dict[str, Any]:
    return {"name": name, "capabilities": ["chat", "completions"],
            "deployments": [{"name": "d", "upstream_model": upstream_model, "base_url": base_url, **dep}]}


@pytest.fixture(scope="module")
def internal() -> Iterator[FakeUpstream]:
    """A service on loopback the gateway must never reach (the egress policy allows only the fake upstream)."""
    up = FakeUpstream(free_port()).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def models(platform: Platform, internal: FakeUpstream) -> dict[str, str]:
    base = platform.upstream.base_url
    tag = uuid.uuid4().hex[:6]
    specs = {
        "chat": _model(f"sec-{tag}/chat", base),
        "leaky": _model(f"sec-{tag}/leaky", base, "leaky-400"),
        "auth401": _model(f"sec-{tag}/auth401", base, "auth-401"),
        "cred": _model(f"sec-{tag}/cred", base, credential_ref="AIAAS_DATABASE_URL"),
        "internal": _model(f"sec-{tag}/internal", internal.base_url),
    }
    with platform.client(token=platform.admin.token) as c:
        for spec in specs.values():
            r = c.post("/v1/admin/models", json=spec)
            assert r.status_code == 201, r.text
    return {k: v["name"] for k, v in specs.items()}


def chat(platform: Platform, key: str, **body: Any) -> httpx.Response:
    with platform.client(platform.streamer, token=key) as c:
        return c.post("/v1/chat/completions", json={"messages": MSG, **body})


def _new_tenant(platform: Platform) -> Tenant:
    return platform.tenant()


# --- High -----------------------------------------------------------------------------------------------


class TestFinding01AdminCannotBecomeOwner:
    """1. An org admin rotating the owner's key got the owner's powers (the successor's secret)."""

    def test_rotating_a_key_that_holds_more_than_you_is_refused(self, platform: Platform) -> None:
        t = _new_tenant(platform)
        owner, admin = t.actors["owner"], t.actors["admin"]
        with platform.client(token=admin.token) as c:
            r = c.post(f"/v1/orgs/{t.org_id}/keys/{owner.key_id}/rotate", json={"grace_seconds": 0})
        doc = problem(r, 403)
        assert doc["code"] == "privilege_escalation" and "sk-" not in r.text
        with platform.client(token=owner.token) as c:  # the owner's key is untouched
            k = c.get(f"/v1/orgs/{t.org_id}/keys/{owner.key_id}").json()
        assert k["status"] == "active" and k["revoked_at"] is None

    def test_rotating_your_own_or_a_lower_roles_key_works(self, platform: Platform) -> None:
        t = _new_tenant(platform)
        admin, member = t.actors["admin"], t.actors["member"]
        with platform.client(token=admin.token) as c:
            assert c.post(f"/v1/orgs/{t.org_id}/keys/{member.key_id}/rotate", json={}).status_code == 201
            r = c.post(f"/v1/orgs/{t.org_id}/keys/{admin.key_id}/rotate", json={})
            assert r.status_code == 201 and r.json()["api_key"]["created_by"] == admin.user_id


class TestFinding02CredentialNamespace:
    """2. ``credential_ref: AIAAS_DATABASE_URL`` sent the database URL to an upstream as a bearer token."""

    def test_a_reference_reaches_only_the_credential_namespace(self, platform: Platform, models: dict[str, str],
                                                              tenants: tuple[Tenant, Tenant]) -> None:
        before = len(platform.upstream.headers)
        r = chat(platform, tenants[0].actors["member"].key or "", model=models["cred"])
        assert r.status_code >= 500, r.text  # the credential is not configured: the deployment fails
        leaked = [h for h in platform.upstream.headers[before:] if "postgresql" in h.get("Authorization", "")]
        assert not leaked
        assert platform.env["AIAAS_DATABASE_URL"] not in r.text

    def test_a_reference_that_looks_like_a_key_is_refused(self, platform: Platform) -> None:
        spec = _model(f"sec-{uuid.uuid4().hex[:6]}/inline", platform.upstream.base_url,
                      credential_ref="sk-live-0123456789abcdef")  # pragma: allowlist secret
        with platform.client(token=platform.admin.token) as c:
            problem(c.post("/v1/admin/models", json=spec), 422)


# --- Medium ---------------------------------------------------------------------------------------------


class TestFinding03Egress:
    """3. Any base_url was accepted and reached (SSRF); upstream errors were reflected; CR/LF injected headers."""

    def test_an_internal_address_is_never_reached(self, platform: Platform, models: dict[str, str],
                                                  internal: FakeUpstream, tenants: tuple[Tenant, Tenant]) -> None:
        r = chat(platform, tenants[0].actors["member"].key or "", model=models["internal"])
        assert r.status_code >= 500 and r.headers["content-type"].startswith("application/problem+json")
        assert internal.requests == []

    @pytest.mark.parametrize("base_url", [
        "http://127.0.0.1:1/v1\r\nX-Injected: 1",
        "http://user:pass@example.com/v1",  # pragma: allowlist secret
        "http://example.com/v1?x=1",
        "http://exa mple.com/v1",
    ])
    def test_a_malformed_base_url_is_refused_at_write(self, platform: Platform, base_url: str) -> None:
        spec = _model(f"sec-{uuid.uuid4().hex[:6]}/bad", base_url)
        with platform.client(token=platform.admin.token) as c:
            problem(c.post("/v1/admin/models", json=spec), 422)
            assert c.get(f"/v1/admin/models/{spec['name']}").status_code == 404

    def test_an_upstream_body_that_is_not_openais_is_not_reflected(self, platform: Platform, models: dict[str, str],
                                                                  tenants: tuple[Tenant, Tenant]) -> None:
        r = chat(platform, tenants[0].actors["member"].key or "", model=models["leaky"])
        problem(r, 400)
        assert "INTERNAL-SECRET" not in r.text and "<html" not in r.text

    def test_an_upstream_401_is_not_passed_on_as_the_tenants_401(self, platform: Platform, models: dict[str, str],
                                                                tenants: tuple[Tenant, Tenant]) -> None:
        r = chat(platform, tenants[0].actors["member"].key or "", model=models["auth401"])
        doc = problem(r, 502)
        assert doc["error"]["code"] == "upstream_misconfigured" and "sk-up" not in r.text


class TestFinding04KeysCannotMintWiderKeys:
    """4. A narrow, short-lived key created a key with no allow-list, no limits and no expiry."""

    def test_a_wider_child_is_refused_and_an_unspecified_one_inherits(self, platform: Platform,
                                                                     models: dict[str, str]) -> None:
        t = _new_tenant(platform)
        owner = t.actors["owner"]
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=40)).isoformat()
        with platform.client(token=owner.token) as c:
            r = c.post(f"/v1/orgs/{t.org_id}/keys", json={
                "name": "narrow", "scopes": ["inference", "management:read", "management:write"],
                "allowed_models": [models["chat"]], "rpm_limit": 5, "tpm_limit": 500, "expires_at": expires})
            assert r.status_code == 201, r.text
            narrow = r.json()["key"]
        with platform.client(token=narrow) as c:
            for wider in ({"allowed_models": None}, {"allowed_models": [models["chat"], "other/model"]},
                          {"rpm_limit": 50}, {"rpm_limit": None}, {"tpm_limit": 10_000}, {"expires_at": None},
                          {"expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()}):
                body = {"name": "child", "scopes": ["inference"], "allowed_models": [models["chat"]],
                        "rpm_limit": 5, "tpm_limit": 500, "expires_at": expires, **wider}
                problem(c.post(f"/v1/orgs/{t.org_id}/keys", json=body), 403)
            r = c.post(f"/v1/orgs/{t.org_id}/keys", json={"name": "child", "scopes": ["inference"]})
            assert r.status_code == 201, r.text
        child = r.json()["api_key"]
        assert child["allowed_models"] == [models["chat"]] and child["rpm_limit"] == 5
        assert child["tpm_limit"] == 500 and child["expires_at"] is not None
        assert dt.datetime.fromisoformat(child["expires_at"]) <= dt.datetime.fromisoformat(expires)


class TestFinding05LoginThrottle:
    """5. X-Forwarded-For from loopback was trusted, concurrent guesses all passed, five guesses locked the owner."""

    def test_a_forwarded_for_header_does_not_choose_the_bucket(self, platform: Platform) -> None:
        # From 127.0.0.1, the address uvicorn trusts forwarded headers from unless told otherwise.
        statuses = []
        with httpx.Client(base_url=platform.api, timeout=30) as c:
            for i in range(35):  # the per-address limit is 30 a minute
                r = c.post("/v1/auth/login", json={"email": f"nobody-{i}@example.com", "password": "x"},
                           headers={"X-Forwarded-For": f"198.51.100.{i}"})
                statuses.append(r.status_code)
        assert 429 in statuses

    def test_concurrent_guesses_are_counted_before_the_password_check(self, platform: Platform) -> None:
        person = platform.person(label="victim")

        source = f"127.0.{uuid.uuid4().int % 200 + 20}.{uuid.uuid4().int % 200 + 20}"

        def guess(_: int) -> int:
            transport = httpx.HTTPTransport(local_address=source)
            with httpx.Client(base_url=platform.api, transport=transport, timeout=30) as c:
                return c.post("/v1/auth/login", json={"email": person.email, "password": "wrong password!!"}
                              ).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(guess, range(24)))
        assert codes.count(401) <= 5 and codes.count(429) >= 19

    def test_guesses_from_elsewhere_do_not_lock_the_owner_out(self, platform: Platform) -> None:
        person = platform.person(label="owner-elsewhere")
        home = httpx.HTTPTransport(local_address="127.0.0.88")
        attacker = httpx.HTTPTransport(local_address="127.0.0.77")
        body = {"email": person.email, "password": PASSWORD}
        with httpx.Client(base_url=platform.api, transport=home, timeout=30) as c:
            assert c.post("/v1/auth/login", json=body).status_code == 200  # the owner's usual address
        with httpx.Client(base_url=platform.api, transport=attacker, timeout=30) as c:
            codes = [c.post("/v1/auth/login", json={**body, "password": "wrong password!!"}).status_code
                     for _ in range(8)]
            assert codes.count(401) == 5 and codes[5:] == [429, 429, 429]  # the guesser is locked out
        with httpx.Client(base_url=platform.api, transport=home, timeout=30) as c:
            r = c.post("/v1/auth/login", json=body)
        assert r.status_code == 200, r.text  # the owner is not


class TestFinding06BadInput:
    """6. Huge numbers, NUL characters, deep nesting and a message without content reached 5xx."""

    def test_a_huge_max_tokens_is_a_400_and_leaves_the_org_working(self, platform: Platform,
                                                                   models: dict[str, str]) -> None:
        t = _new_tenant(platform)
        with platform.client(token=t.actors["owner"].token) as c:
            assert c.put(f"/v1/orgs/{t.org_id}/usage-policy", json={"tpm_limit": 10**9}).status_code == 200
        key = t.actors["member"].key or ""
        for huge in (10**18, 2**63, 10**30):
            problem(chat(platform, key, model=models["chat"], max_tokens=huge), 400)
        for _ in range(3):
            assert chat(platform, key, model=models["chat"], max_tokens=5).status_code == 200

    def test_nul_characters_are_refused_everywhere(self, platform: Platform, models: dict[str, str],
                                                   tenants: tuple[Tenant, Tenant]) -> None:
        t = tenants[0]
        owner = t.actors["owner"]
        problem(chat(platform, owner.key or "", model="bad\x00model"), 400)
        with platform.client() as c:
            assert c.post("/v1/auth/login", json={"email": "a\x00b@example.com", "password": "x"}).status_code == 422
        with platform.client(token=owner.token) as c:
            problem(c.post(f"/v1/orgs/{t.org_id}/keys", json={"name": "k\x00"}), 422)
            problem(c.get(f"/v1/orgs/{t.org_id}/keys", params={"name": "a\x00"}), 422)
            problem(c.get("/v1/usage/requests", params={"org_id": t.org_id, "model": "m\x00"}), 422)

    def test_deep_nesting_is_a_4xx(self, platform: Platform, tenants: tuple[Tenant, Tenant]) -> None:
        deep = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        owner = tenants[0].actors["owner"]
        with platform.client(token=owner.token) as c:
            problem(c.post("/v1/orgs", content=deep, headers={"content-type": "application/json"}), 422)
        body = b'{"model":"m","messages":[{"role":"user","content":' + b"[" * 5000 + b"]" * 5000 + b"}]}"
        with platform.client(platform.streamer, token=owner.key) as c:
            problem(c.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"}), 400)

    def test_a_message_without_content_is_a_400(self, platform: Platform, models: dict[str, str],
                                                tenants: tuple[Tenant, Tenant]) -> None:
        r = chat(platform, tenants[0].actors["member"].key or "", model=models["chat"])
        assert r.status_code == 200
        with platform.client(platform.streamer, token=tenants[0].actors["member"].key) as c:
            r = c.post("/v1/chat/completions", json={"model": models["chat"], "messages": [{"role": "user"}]})
        assert problem(r, 400)["error"]["param"] == "messages[0].content"


class TestFinding07AdmissionCountsChoices:
    """7. ``n=128`` reserved the tokens of one completion while 128 were asked for."""

    def test_n_multiplies_the_reservation(self, platform: Platform, models: dict[str, str]) -> None:
        t = _new_tenant(platform)
        with platform.client(token=t.actors["owner"].token) as c:
            r = c.put(f"/v1/orgs/{t.org_id}/usage-policy", json={"monthly_token_budget": 5000})
            assert r.status_code == 200, r.text
        key = t.actors["member"].key or ""
        doc = problem(chat(platform, key, model=models["chat"], n=128, max_tokens=100), 429)
        assert doc["error"]["code"] == "insufficient_quota"
        assert chat(platform, key, model=models["chat"], n=1, max_tokens=100).status_code == 200


class TestFinding08Metrics:
    """8. /metrics was open to anyone and every unknown model name a caller sent became a label."""

    def test_metrics_need_the_token_and_only_catalog_models_are_labels(self, platform: Platform,
                                                                      tenants: tuple[Tenant, Tenant]) -> None:
        for base in (platform.api, platform.streamer, platform.worker):
            with httpx.Client(base_url=base, timeout=30) as c:
                problem(c.get("/metrics"), 401)
                problem(c.get("/metrics", headers={"authorization": "Bearer wrong-token-0123456789"}), 401)
                assert c.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
        names = [f"probe-{uuid.uuid4().hex[:8]}" for _ in range(5)]
        for name in names:
            assert chat(platform, tenants[0].actors["member"].key or "", model=name).status_code == 404
        with httpx.Client(base_url=platform.streamer, timeout=30) as c:
            text = c.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}).text
        assert not any(n in text for n in names)
        assert 'model="<unknown>"' in text


# --- Low ------------------------------------------------------------------------------------------------


class TestFinding09IdempotentKeyCreation:
    """9. Replaying an Idempotency-Key returned the secret again (also after revocation); Redis held it 24 h."""

    def test_a_replay_never_shows_the_secret_again(self, platform: Platform, tenants: tuple[Tenant, Tenant]) -> None:
        t = tenants[0]
        member = t.actors["member"]
        headers = {"Idempotency-Key": f"sec-{uuid.uuid4()}"}
        with platform.client(token=member.token) as c:
            first = c.post(f"/v1/orgs/{t.org_id}/keys", json={"name": "idem"}, headers=headers)
            assert first.status_code == 201
            secret = first.json()["key"]
            assert c.delete(f"/v1/orgs/{t.org_id}/keys/{first.json()['api_key']['id']}").status_code == 200
            again = c.post(f"/v1/orgs/{t.org_id}/keys", json={"name": "idem"}, headers=headers)
        assert problem(again, 409)["code"] == "idempotency_secret_unavailable"
        assert secret not in again.text
        import redis

        r = redis.Redis.from_url(platform.settings.redis_url)
        try:
            found = [k for k in r.scan_iter(match=f"{platform.settings.redis_prefix}*", count=1000)
                     if r.type(k) == b"string" and secret.encode() in (r.get(k) or b"")]
        finally:
            r.close()
        assert found == []


class TestFinding10NoBoundValuesInErrors:
    """10. SQL errors logged their bound parameters (a bcrypt hash and a key's SHA-256 appeared in logs)."""

    async def test_a_failing_statement_does_not_carry_its_values(self, settings: Any) -> None:
        from sqlalchemy import text

        from aiaas.kernel.db import Database

        db = Database(settings, role="test")
        secret = "$2b$12$" + "x" * 53
        try:
            async with db.sessionmaker("auth")() as s:
                with pytest.raises(Exception) as info:
                    await s.execute(text("SELECT CAST(:v AS integer)"), {"v": secret})
        finally:
            await db.dispose()
        assert secret not in str(info.value)


class TestFinding11ServiceAccountNeverOwner:
    """11. A service account could be promoted to owner by PATCH (creation as owner was refused)."""

    def test_promoting_a_service_account_to_owner_is_refused(self, platform: Platform) -> None:
        t = _new_tenant(platform)
        with platform.client(token=t.actors["owner"].token) as c:
            sa = c.post(f"/v1/orgs/{t.org_id}/service-accounts", json={"name": "bot", "role": "member"}).json()
            r = c.patch(f"/v1/orgs/{t.org_id}/members/{sa['id']}", json={"role": "owner"})
            assert problem(r, 403)["code"] == "service_account_owner"
            roles = {m["user_id"]: m["role"] for m in c.get(f"/v1/orgs/{t.org_id}/members").json()["data"]}
        assert roles[sa["id"]] == "member"


class TestFinding12HeaderSize:
    """12. Request heads of any size were accepted (32 MB in one)."""

    @pytest.mark.parametrize("which", ["api", "streamer"])
    def test_a_huge_head_is_a_431_problem(self, platform: Platform, which: str) -> None:
        base = getattr(platform, which)
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.get("/health", headers={"x-filler": "a" * 64 * 1024})
        problem(r, 431)
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/health", headers={"x-filler": "a" * 8 * 1024}).status_code == 200


class TestFinding13CsvInjection:
    """13. The CSV export did not neutralise cells that a spreadsheet runs as formulas."""

    def test_a_formula_a_tenant_chose_is_shown_not_run(self, platform: Platform, models: dict[str, str]) -> None:
        t = _new_tenant(platform)
        rid = f"-1-{uuid.uuid4().hex[:8]}"  # a request id the tenant picks: a formula to a spreadsheet
        with platform.client(platform.streamer, token=t.actors["member"].key) as c:
            r = c.post("/v1/chat/completions", json={"model": models["chat"], "messages": MSG},
                       headers={"x-request-id": rid})
            assert r.status_code == 200
        deadline = time.monotonic() + 60
        rows: list[dict[str, str]] = []
        with platform.client(token=t.actors["owner"].token) as c:
            while time.monotonic() < deadline:
                text = c.get("/v1/usage/requests.csv", params={"org_id": t.org_id}).text
                rows = list(csv.DictReader(io.StringIO(text)))
                if rows:
                    break
                time.sleep(0.3)
        assert rows, "the request never reached the ledger"
        assert rows[0]["request_id"] == "'" + rid


class TestFinding14EmbeddedModelCap:
    """14. The embedded model's max_tokens was a default, not a cap (10^15 accepted)."""

    def test_max_tokens_above_the_cap_is_refused(self) -> None:
        from aiaas.inference.providers.base import Call, UpstreamFailure
        from aiaas.inference.providers.local import LocalRunner

        runner = LocalRunner(model_path=None, n_ctx=256, n_threads=1, max_queue=1, default_max_tokens=64)
        try:
            call = Call(endpoint="chat.completions", public_model="local/x", deadline=time.monotonic() + 10,
                        body=msgspec.json.encode({"model": "x", "messages": MSG, "max_tokens": 10**15}))
            with pytest.raises(UpstreamFailure) as info:
                runner._kwargs(call)
            assert info.value.status == 400 and b"max_tokens" in (info.value.body or b"")
        finally:
            runner.shutdown()


class TestFinding15ParserErrors:
    """15. uvicorn's own parser errors were text/plain, not problem+json."""

    @pytest.mark.parametrize("which", ["api", "streamer"])
    def test_garbage_on_the_wire_gets_a_problem_document(self, platform: Platform, which: str) -> None:
        port = int(getattr(platform, which).rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert b"content-type: application/problem+json" in head.lower()
        assert msgspec.json.decode(body)["status"] == 400
