"""A privilege-escalation matrix: nothing an actor creates or changes may hold more than the actor holds.

The platform's rule, attacked through the public API of a running platform: a role, an API key's scopes, its
model allow-list, its RPM and TPM limits and its expiry can only be handed out (a member added, a role
changed, a service account created, a key created or rotated, whose secret the actor then holds) up to what
the actor holds itself. Only owners grant, change or remove owners; service accounts are never owners; only
owners manage the org itself; another org is invisible (404); platform powers stay with platform admins'
sessions.

Every role of an org acts twice: with its session and with an API key holding every scope (the viewer's key
belongs to a viewer service account, since viewers cannot create keys); the owner also acts with a read-only
key, and keys narrowed by scopes, models, limits or expiry act in the key cases. Each refused case asserts a
4xx problem+json (403 for a refusal by permission or escalation, 404 where the target is not the actor's to
see), that no secret is in the answer and that the state, read back through the API as the owner, is
unchanged. The allowed counterparts assert success, so the matrix shows where the line is drawn.

Where a request leaves a restriction out (a key created by a narrowed key without ``allowed_models``, say),
the platform may either refuse it or pass its own restriction on: the case asserts the invariant itself, that
what was created holds no more than its creator. Asking for no restriction at all (an explicit ``null``) is
refused.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from .conftest import PASSWORD, Platform, Tenant, problem

pytestmark = [pytest.mark.e2e]

ALL_SCOPES = ["inference", "management:read", "management:write"]
RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
ROLES = tuple(RANK)
ACTORS = ("owner-session", "owner-key", "owner-read-key", "admin-session", "admin-key", "member-session",
          "member-key", "viewer-session", "viewer-key")
# Actors holding ``members:manage`` with a scope that lets them write (a read-only key does not).
MANAGERS = frozenset({"owner-session", "owner-key", "admin-session", "admin-key"})
OWNERS = frozenset({"owner-session", "owner-key"})


def role_of(actor: str) -> str:
    return actor.split("-", 1)[0]


def at(**delta: float) -> str:
    """An instant ``delta`` from now, as the API writes it."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


def instant(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


# --- Assertions ---------------------------------------------------------------------------------------------

def _secrets(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        found = [v for k, v in doc.items() if k == "key" and isinstance(v, str) and v.startswith("sk-")]
        return found + [s for v in doc.values() for s in _secrets(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _secrets(v)]
    return []


def assert_no_secret(r: httpx.Response) -> None:
    try:
        doc = r.json()
    except ValueError:
        doc = None
    assert not _secrets(doc), f"a refused request handed out a secret: {r.status_code} {r.text[:300]}"
    assert '"sk-' not in r.text, f"a refused request answered with an API key: {r.text[:300]}"


def refused(r: httpx.Response, *, statuses: tuple[int, ...] = (403,)) -> dict[str, Any]:
    """A refusal: one of ``statuses``, as problem+json, without any secret in it."""
    assert r.status_code in statuses, \
        f"expected {' or '.join(map(str, statuses))}, got {r.status_code}: {r.request.method} {r.request.url} " \
        f"{(r.request.content or b'')[:200]!r} -> {r.text[:400]}"
    doc = problem(r, r.status_code)
    assert_no_secret(r)
    return doc


def allowed(r: httpx.Response, status: int) -> Any:
    assert r.status_code == status, \
        f"an allowed action was refused: {r.request.method} {r.request.url} " \
        f"{(r.request.content or b'')[:200]!r} -> {r.status_code} {r.text[:400]}"
    return r.json() if r.content else None


def within(parent: dict[str, Any], child: dict[str, Any]) -> list[str]:
    """How ``child`` (a key) holds more than ``parent`` (the key that created it); empty when it does not."""
    out = []
    if not set(child["scopes"]) <= set(parent["scopes"]):
        out.append(f"scopes {child['scopes']} not within {parent['scopes']}")
    if parent["allowed_models"] is not None and (
            child["allowed_models"] is None or not set(child["allowed_models"]) <= set(parent["allowed_models"])):
        out.append(f"allowed_models {child['allowed_models']} not within {parent['allowed_models']}")
    for name in ("rpm_limit", "tpm_limit"):
        if parent[name] is not None and (child[name] is None or child[name] > parent[name]):
            out.append(f"{name} {child[name]} above {parent[name]}")
    spend = "monthly_spend_limit_usd"
    if parent[spend] is not None and (child[spend] is None or Decimal(child[spend]) > Decimal(parent[spend])):
        out.append(f"{spend} {child[spend]} above {parent[spend]}")
    mine, theirs = instant(parent["expires_at"]), instant(child["expires_at"])
    if mine is not None and (theirs is None or theirs > mine):
        out.append(f"expires_at {child['expires_at']} after {parent['expires_at']}")
    return out


# --- The world ----------------------------------------------------------------------------------------------

@dataclass
class World:
    """Two orgs, a bearer token per actor in the first, and people and service accounts to act on."""

    platform: Platform
    home: Tenant
    other: Tenant
    tokens: dict[str, str] = field(default_factory=dict)
    candidate: tuple[str, str] = ("", "")  # (email, user_id) of a person outside ``home``
    subject: tuple[str, str] = ("", "")  # a person in ``home`` whose role is changed (a viewer before each case)
    coowner: tuple[str, str] = ("", "")  # a second owner of ``home``
    sa_id: str = ""  # a service account of ``home`` (a member before each case)
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    @property
    def org(self) -> str:
        return self.home.org_id

    def c(self, token: str) -> httpx.Client:
        if token not in self.clients:
            self.clients[token] = self.platform.client(token=token)
        return self.clients[token]

    def as_(self, actor: str) -> httpx.Client:
        return self.c(self.tokens[actor])

    @property
    def owner(self) -> httpx.Client:
        return self.c(self.home.actors["owner"].token)

    @property
    def admin(self) -> httpx.Client:
        return self.c(self.platform.admin.token)

    def session(self, role: str) -> httpx.Client:
        return self.c(self.home.actors[role].token)

    def person(self, label: str) -> tuple[str, str]:
        email = f"esc-{label}-{uuid.uuid4().hex[:10]}@example.com"
        r = self.admin.post("/v1/admin/users", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        return email, r.json()["id"]

    def new_key(self, client: httpx.Client, org: str | None = None, **body: Any) -> dict[str, Any]:
        r = client.post(f"/v1/orgs/{org or self.org}/keys", json={"name": "esc", "scopes": ALL_SCOPES, **body})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def keys(self, org: str | None = None, client: httpx.Client | None = None) -> dict[str, dict[str, Any]]:
        """Every key of the org (revoked ones too) as its owner reads them, without the usage stamp."""
        out: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params = {"include_revoked": "true", "limit": "100", **({"cursor": cursor} if cursor else {})}
            r = (client or self.owner).get(f"/v1/orgs/{org or self.org}/keys", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            out.update({k["id"]: {n: v for n, v in k.items() if n != "last_used_at"} for k in page["data"]})
            cursor = page["next_cursor"]
            if not page["has_more"]:
                return out

    def members(self, org: str | None = None, client: httpx.Client | None = None) -> dict[str, str]:
        out: dict[str, str] = {}
        cursor = None
        while True:
            params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            r = (client or self.owner).get(f"/v1/orgs/{org or self.org}/members", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            out.update({m["user_id"]: m["role"] for m in page["data"]})
            cursor = page["next_cursor"]
            if not page["has_more"]:
                return out

    def service_accounts(self, org: str | None = None) -> dict[str, str]:
        r = self.owner.get(f"/v1/orgs/{org or self.org}/service-accounts", params={"limit": "100"})
        assert r.status_code == 200, r.text
        return {sa["id"]: sa["role"] for sa in r.json()["data"]}

    def set_role(self, user_id: str, role: str) -> None:
        """Put a member of ``home`` back to ``role`` (as the owner), whatever a case did to it."""
        r = self.owner.patch(f"/v1/orgs/{self.org}/members/{user_id}", json={"role": role})
        assert r.status_code == 200, r.text

    def join(self, org: str, actor: str) -> str:
        """The bearer token with which ``actor`` acts in ``org`` (an org of the home owner's): its membership
        made and, for a key actor, its key issued."""
        role, via = actor.split("-", 1)
        owner = self.owner
        if actor == "viewer-key":
            r = owner.post(f"/v1/orgs/{org}/service-accounts", json={"name": "esc-viewer", "role": "viewer"})
            assert r.status_code == 201, r.text
            return str(self.new_key(owner, org, service_account_id=r.json()["id"])["key"])
        if role != "owner":
            r = owner.post(f"/v1/orgs/{org}/members", json={"email": self.home.actors[role].email, "role": role})
            assert r.status_code == 201, r.text
        session = self.session(role)
        if via == "session":
            return self.home.actors[role].token
        scopes = ["management:read"] if via == "read-key" else ALL_SCOPES
        return str(self.new_key(session, org, scopes=scopes)["key"])

    def throwaway_org(self) -> str:
        r = self.owner.post("/v1/orgs", json={"name": f"esc-{uuid.uuid4().hex[:8]}"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


@pytest.fixture(scope="module")
def world(platform: Platform, tenants: tuple[Tenant, Tenant]) -> Iterator[World]:
    home, other = tenants
    w = World(platform=platform, home=home, other=other)
    try:
        for role in ("owner", "admin", "member", "viewer"):
            w.tokens[f"{role}-session"] = home.actors[role].token
        for role in ("owner", "admin", "member"):
            key = home.actors[role].key
            assert key, f"the {role} of the tenant has no key"
            w.tokens[f"{role}-key"] = key
        w.tokens["owner-read-key"] = w.new_key(w.owner, scopes=["management:read"])["key"]
        r = w.owner.post(f"/v1/orgs/{w.org}/service-accounts", json={"name": "esc-viewer", "role": "viewer"})
        assert r.status_code == 201, r.text
        w.tokens["viewer-key"] = w.new_key(w.owner, service_account_id=r.json()["id"])["key"]
        w.candidate, w.subject, w.coowner = w.person("candidate"), w.person("subject"), w.person("coowner")
        for (email, _), role in ((w.subject, "viewer"), (w.coowner, "owner")):
            r = w.owner.post(f"/v1/orgs/{w.org}/members", json={"email": email, "role": role})
            assert r.status_code == 201, r.text
        r = w.owner.post(f"/v1/orgs/{w.org}/service-accounts", json={"name": "esc-sa", "role": "member"})
        assert r.status_code == 201, r.text
        w.sa_id = r.json()["id"]
        yield w
    finally:
        for client in w.clients.values():
            client.close()


# --- Roles ----------------------------------------------------------------------------------------------------

def _grants(actor: str, role: str) -> bool:
    return actor in MANAGERS and RANK[role] <= RANK[role_of(actor)]


GRANTS = [(a, r) for a in ACTORS for r in ROLES]


class TestRolesAreGrantedUpToTheGrantersOwn:
    """Adding a member or changing a role: never above the actor's role (only owners grant owner)."""

    @pytest.mark.parametrize(("actor", "role"), GRANTS, ids=[f"{a} adds a {r}" for a, r in GRANTS])
    def test_add_member(self, world: World, actor: str, role: str) -> None:
        email, uid = world.candidate
        world.owner.delete(f"/v1/orgs/{world.org}/members/{uid}")  # not a member before the case
        before = world.members()
        r = world.as_(actor).post(f"/v1/orgs/{world.org}/members", json={"email": email, "role": role})
        if _grants(actor, role):
            allowed(r, 201)
            assert world.members()[uid] == role
        else:
            refused(r)
            assert world.members() == before

    @pytest.mark.parametrize(("actor", "role"), GRANTS, ids=[f"{a} makes a viewer {r}" for a, r in GRANTS])
    def test_change_role(self, world: World, actor: str, role: str) -> None:
        uid = world.subject[1]
        world.set_role(uid, "viewer")
        before = world.members()
        try:
            r = world.as_(actor).patch(f"/v1/orgs/{world.org}/members/{uid}", json={"role": role})
            if _grants(actor, role):
                allowed(r, 200)
                assert world.members()[uid] == role
            else:
                refused(r)
                assert world.members() == before
        finally:
            world.set_role(uid, "viewer")

    @pytest.mark.parametrize("actor", ["admin-session", "admin-key"])
    @pytest.mark.parametrize("change", ["demotes", "removes"])
    def test_admin_cannot_touch_an_owner(self, world: World, actor: str, change: str) -> None:
        uid = world.coowner[1]
        path = f"/v1/orgs/{world.org}/members/{uid}"
        before = world.members()
        assert before[uid] == "owner"
        try:
            c = world.as_(actor)
            refused(c.patch(path, json={"role": "member"}) if change == "demotes" else c.delete(path))
            assert world.members() == before
        finally:
            if world.members().get(uid) != "owner":  # an escalation went through: put the co-owner back
                if uid in world.members():
                    world.set_role(uid, "owner")
                else:
                    world.owner.post(f"/v1/orgs/{world.org}/members", json={"email": world.coowner[0],
                                                                            "role": "owner"})

    @pytest.mark.parametrize("actor", sorted(OWNERS))
    def test_owner_changes_an_owner(self, world: World, actor: str) -> None:
        uid = world.coowner[1]
        try:
            allowed(world.as_(actor).patch(f"/v1/orgs/{world.org}/members/{uid}", json={"role": "admin"}), 200)
            assert world.members()[uid] == "admin"
        finally:
            world.set_role(uid, "owner")


# --- Service accounts -------------------------------------------------------------------------------------------

SA_ALLOWED = [("owner-session", "admin"), ("owner-key", "admin"), ("admin-session", "admin"),
              ("admin-key", "member")]


class TestServiceAccountsAreNeverOwners:
    """A service account is never an owner, whoever asks; otherwise its role follows the grant rule."""

    @pytest.mark.parametrize("actor", ACTORS, ids=[f"{a} promotes it to owner" for a in ACTORS])
    def test_promote_to_owner(self, world: World, actor: str) -> None:
        world.set_role(world.sa_id, "member")
        before = world.members()
        try:
            refused(world.as_(actor).patch(f"/v1/orgs/{world.org}/members/{world.sa_id}", json={"role": "owner"}))
            assert world.members() == before
        finally:
            world.set_role(world.sa_id, "member")

    @pytest.mark.parametrize(("actor", "role"), SA_ALLOWED, ids=[f"{a} makes it {r}" for a, r in SA_ALLOWED])
    def test_promote_within_the_rule(self, world: World, actor: str, role: str) -> None:
        world.set_role(world.sa_id, "viewer")
        try:
            allowed(world.as_(actor).patch(f"/v1/orgs/{world.org}/members/{world.sa_id}", json={"role": role}), 200)
            assert world.members()[world.sa_id] == role
        finally:
            world.set_role(world.sa_id, "member")

    @pytest.mark.parametrize("actor", ACTORS, ids=[f"{a} creates an owner one" for a in ACTORS])
    def test_create_as_owner(self, world: World, actor: str) -> None:
        before = world.service_accounts()
        r = world.as_(actor).post(f"/v1/orgs/{world.org}/service-accounts", json={"name": "esc", "role": "owner"})
        refused(r)
        assert world.service_accounts() == before

    @pytest.mark.parametrize(("actor", "role"), SA_ALLOWED, ids=[f"{a} creates a {r} one" for a, r in SA_ALLOWED])
    def test_create_within_the_rule(self, world: World, actor: str, role: str) -> None:
        r = world.as_(actor).post(f"/v1/orgs/{world.org}/service-accounts", json={"name": "esc", "role": role})
        sa = allowed(r, 201)
        assert world.service_accounts()[sa["id"]] == role

    @pytest.mark.parametrize("actor", sorted(set(ACTORS) - MANAGERS))
    def test_create_without_members_manage(self, world: World, actor: str) -> None:
        before = world.service_accounts()
        r = world.as_(actor).post(f"/v1/orgs/{world.org}/service-accounts", json={"name": "esc", "role": "viewer"})
        refused(r)
        assert world.service_accounts() == before


# --- API keys ---------------------------------------------------------------------------------------------------

# The narrowed keys (created by the actor's own session) and what each then asks for: "refuse" (must be 403; an
# explicit null asks for no restriction at all), "within" (left out: refused, or created holding no more than its
# creator, which passes its own restriction on) or "allow" (created as asked).
NARROWED: dict[str, dict[str, Any]] = {
    "write-only": {"scopes": ["management:write"]},
    "models": {"allowed_models": ["esc/m1", "esc/m2"]},
    "rpm": {"rpm_limit": 10},
    "tpm": {"tpm_limit": 1000},
    "spend": {"monthly_spend_limit_usd": "10"},
    "expiry": {"expires_at": "+1d"},
}
CHILDREN: list[tuple[str, str, dict[str, Any], str]] = [
    ("write-only", "asks for inference", {"scopes": ["inference"]}, "refuse"),
    ("write-only", "asks for every scope", {"scopes": ALL_SCOPES}, "refuse"),
    ("write-only", "asks for its own scope", {"scopes": ["management:write"]}, "allow"),
    ("models", "leaves the list out", {}, "within"),
    ("models", "asks for no list", {"allowed_models": None}, "refuse"),
    ("models", "asks for a model outside its list", {"allowed_models": ["esc/m3"]}, "refuse"),
    ("models", "asks for one model in and one out", {"allowed_models": ["esc/m1", "esc/m3"]}, "refuse"),
    ("models", "asks for part of its list", {"allowed_models": ["esc/m1"]}, "allow"),
    ("models", "asks for its list", {"allowed_models": ["esc/m1", "esc/m2"]}, "allow"),
    ("rpm", "leaves the limit out", {}, "within"),
    ("rpm", "asks for no limit", {"rpm_limit": None}, "refuse"),
    ("rpm", "asks for a higher limit", {"rpm_limit": 11}, "refuse"),
    ("rpm", "asks for the highest limit", {"rpm_limit": 2_147_483_647}, "refuse"),  # the largest a key takes
    ("rpm", "asks for its limit", {"rpm_limit": 10}, "allow"),
    ("rpm", "asks for a lower limit", {"rpm_limit": 5}, "allow"),
    ("tpm", "leaves the limit out", {}, "within"),
    ("tpm", "asks for no limit", {"tpm_limit": None}, "refuse"),
    ("tpm", "asks for a higher limit", {"tpm_limit": 1001}, "refuse"),
    ("tpm", "asks for its limit", {"tpm_limit": 1000}, "allow"),
    ("spend", "leaves the limit out", {}, "within"),
    ("spend", "asks for no limit", {"monthly_spend_limit_usd": None}, "refuse"),
    ("spend", "asks for a nano-USD more", {"monthly_spend_limit_usd": "10.000000001"}, "refuse"),
    ("spend", "asks for its limit", {"monthly_spend_limit_usd": "10"}, "allow"),
    ("spend", "asks for a lower limit", {"monthly_spend_limit_usd": "2.5"}, "allow"),
    ("expiry", "never expires", {}, "within"),
    ("expiry", "asks for no expiry", {"expires_at": None}, "refuse"),
    ("expiry", "expires later", {"expires_at": "+2d"}, "refuse"),
    ("expiry", "expires sooner", {"expires_at": "+1h"}, "allow"),
]
KEY_CASES = [(role, *case) for role in ("owner", "admin", "member") for case in CHILDREN]


def _when(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with relative expiries ("+1d", "+2d", "+1h") made instants."""
    shifts = {"+1d": {"days": 1}, "+2d": {"days": 2}, "+1h": {"hours": 1}}
    return {k: at(**shifts[v]) if k == "expires_at" and v in shifts else v for k, v in body.items()}


class TestKeysNeverHoldMoreThanTheirCreator:
    """A key creating a key: its scopes, models, limits and lifetime are the most the new key can get."""

    @pytest.mark.parametrize(("role", "narrowed", "what", "child", "expect"), KEY_CASES,
                             ids=[f"{r}'s {n} key {w}" for r, n, w, _, _ in KEY_CASES])
    def test_narrowed_key_creates_a_key(self, world: World, role: str, narrowed: str, what: str,
                                        child: dict[str, Any], expect: str) -> None:
        parent = world.new_key(world.session(role), **{"scopes": ALL_SCOPES, **_when(NARROWED[narrowed])})
        body = {"name": "esc-child", "scopes": parent["api_key"]["scopes"], **_when(child)}
        before = world.keys()
        r = world.c(parent["key"]).post(f"/v1/orgs/{world.org}/keys", json=body)
        if expect == "allow" or (expect == "within" and r.status_code == 201):
            created = allowed(r, 201)
            assert created["key"].startswith("sk-")
            assert not within(parent["api_key"], created["api_key"]), within(parent["api_key"], created["api_key"])
            for name, value in _when(child).items():
                if expect == "allow" and name != "expires_at":
                    assert created["api_key"][name] == value
        else:
            refused(r)
            assert world.keys() == before

    @pytest.mark.parametrize(("child", "expect"), [({"rpm_limit": 11}, "refuse"), ({"rpm_limit": None}, "refuse"),
                                                   ({}, "within")],
                             ids=["asks for a higher limit", "asks for no limit", "leaves the limit out"])
    def test_narrowed_key_creates_a_service_account_key(self, world: World, child: dict[str, Any],
                                                        expect: str) -> None:
        parent = world.new_key(world.owner, rpm_limit=10)
        body = {"name": "esc-sa-child", "scopes": ALL_SCOPES, "service_account_id": world.sa_id, **child}
        before = world.keys()
        r = world.c(parent["key"]).post(f"/v1/orgs/{world.org}/keys", json=body)
        if expect == "within" and r.status_code == 201:
            created = r.json()["api_key"]
            assert not within(parent["api_key"], created), within(parent["api_key"], created)
        else:
            refused(r)
            assert world.keys() == before

    @pytest.mark.parametrize("actor", ["member-session", "member-key", "owner-read-key", "viewer-session",
                                       "viewer-key"])
    def test_key_for_a_service_account_needs_keys_manage_all(self, world: World, actor: str) -> None:
        before = world.keys()
        r = world.as_(actor).post(f"/v1/orgs/{world.org}/keys", json={
            "name": "esc", "scopes": ["inference"], "service_account_id": world.sa_id})
        refused(r)
        assert world.keys() == before

    @pytest.mark.parametrize("actor", ["owner-read-key", "viewer-session", "viewer-key"])
    def test_key_needs_keys_manage_own_and_write(self, world: World, actor: str) -> None:
        before = world.keys()
        refused(world.as_(actor).post(f"/v1/orgs/{world.org}/keys", json={"name": "esc", "scopes": ["inference"]}))
        assert world.keys() == before

    @pytest.mark.parametrize("actor", ["owner-session", "owner-key", "admin-session", "admin-key", "member-session",
                                       "member-key"])
    def test_unrestricted_actor_creates_a_narrower_key(self, world: World, actor: str) -> None:
        created = allowed(world.as_(actor).post(f"/v1/orgs/{world.org}/keys", json={
            "name": "esc", "scopes": ["inference"], "allowed_models": ["esc/m1"], "rpm_limit": 5, "tpm_limit": 50,
            "expires_at": at(hours=1)}), 201)
        assert created["key"].startswith("sk-")
        assert created["api_key"]["allowed_models"] == ["esc/m1"] and created["api_key"]["rpm_limit"] == 5


# --- Rotation ---------------------------------------------------------------------------------------------------

# (actor, whose key is rotated, expected): the actor receives the successor's secret.
ROTATIONS = [
    ("admin-session", "owner", "refuse"),
    ("admin-key", "owner", "refuse"),
    ("member-session", "owner", "hidden"),
    ("member-key", "owner", "hidden"),
    ("member-key", "admin", "hidden"),
    ("viewer-session", "member", "hidden"),
    ("viewer-key", "member", "hidden"),
    ("owner-read-key", "owner", "refuse"),
    ("owner-session", "admin", "allow"),
    ("owner-key", "member", "allow"),
    ("admin-session", "member", "allow"),
    ("admin-key", "member", "allow"),
    *((f"{role}-{via}", role, "allow") for role in ("owner", "admin", "member") for via in ("session", "key")),
]
# (the actor's narrowing, the rotated key of the same owner, expected).
NARROWED_ROTATIONS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("rpm", {"rpm_limit": 10}, {}, "refuse"),
    ("models", {"allowed_models": ["esc/m1"]}, {}, "refuse"),
    ("write-only", {"scopes": ["management:write"]}, {"scopes": ["inference", "management:write"]}, "refuse"),
    ("expiry", {"expires_at": "+1d"}, {}, "refuse"),
    ("rpm", {"rpm_limit": 10}, {"rpm_limit": 5}, "allow"),
]


def _rotation_id(actor: str, whose: str, expect: str) -> str:
    target = "its own" if role_of(actor) == whose and expect == "allow" else f"the {whose}'s"
    return f"{actor} rotates {target} key"


def _rotation_refused(world: World, r: httpx.Response, key_id: str, before: dict[str, dict[str, Any]],
                      statuses: tuple[int, ...]) -> None:
    refused(r, statuses=statuses)
    after = world.keys()
    assert after[key_id] == before[key_id], f"the key was changed: {before[key_id]} -> {after[key_id]}"
    assert after[key_id]["status"] == "active" and after[key_id]["expires_at"] is None
    assert not [k for k in after.values() if k["rotated_from"] == key_id], "a successor was issued"
    assert after == before


class TestRotationHandsOutNoMoreThanTheActorHolds:
    """Rotating a key gives its successor's secret to the actor: only for keys that hold no more than it."""

    @pytest.mark.parametrize(("actor", "whose", "expect"), ROTATIONS, ids=[_rotation_id(*c) for c in ROTATIONS])
    def test_rotate(self, world: World, actor: str, whose: str, expect: str) -> None:
        target = world.new_key(world.session(whose))["api_key"]["id"]
        before = world.keys()
        r = world.as_(actor).post(f"/v1/orgs/{world.org}/keys/{target}/rotate", json={"grace_seconds": 3600})
        if expect == "allow":
            created = allowed(r, 201)
            assert created["key"].startswith("sk-") and created["api_key"]["rotated_from"] == target
        else:
            _rotation_refused(world, r, target, before, (403,) if expect == "refuse" else (403, 404))

    @pytest.mark.parametrize(("narrowed", "mine", "theirs", "expect"), NARROWED_ROTATIONS,
                             ids=[f"{n} key rotates {'a narrower' if e == 'allow' else 'a broader'} key"
                                  for n, _, _, e in NARROWED_ROTATIONS])
    def test_narrowed_key_rotates(self, world: World, narrowed: str, mine: dict[str, Any], theirs: dict[str, Any],
                                  expect: str) -> None:
        actor = world.new_key(world.owner, **{"scopes": ALL_SCOPES, **_when(mine)})
        target = world.new_key(world.owner, **{"scopes": ALL_SCOPES, **theirs})["api_key"]
        before = world.keys()
        r = world.c(actor["key"]).post(f"/v1/orgs/{world.org}/keys/{target['id']}/rotate",
                                       json={"grace_seconds": 3600})
        if expect == "allow":
            created = allowed(r, 201)
            assert not within(actor["api_key"], created["api_key"]), within(actor["api_key"], created["api_key"])
        else:
            _rotation_refused(world, r, target["id"], before, (403,))

    def test_narrowed_key_rotates_itself(self, world: World) -> None:
        actor = world.new_key(world.owner, rpm_limit=10, allowed_models=["esc/m1"])
        r = world.c(actor["key"]).post(f"/v1/orgs/{world.org}/keys/{actor['api_key']['id']}/rotate",
                                       json={"grace_seconds": 0})
        created = allowed(r, 201)
        assert created["api_key"]["rpm_limit"] == 10 and created["api_key"]["allowed_models"] == ["esc/m1"]


# --- The org itself ---------------------------------------------------------------------------------------------

ORG_ACTIONS = ("rename", "delete", "set the usage policy of")
ORG_CASES = [(a, action) for a in ACTORS for action in ORG_ACTIONS]


class TestOnlyOwnersManageTheOrg:
    """Renaming or deleting the org and changing its usage policy need ``org:manage``: owners only."""

    @pytest.mark.parametrize(("actor", "action"), ORG_CASES, ids=[f"{a} {x} the org" for a, x in ORG_CASES])
    def test_org_management(self, world: World, actor: str, action: str) -> None:
        org = world.throwaway_org()
        c = world.c(world.join(org, actor))
        owner = world.owner
        before = (owner.get(f"/v1/orgs/{org}").json(), owner.get(f"/v1/orgs/{org}/usage-policy").json())
        if action == "rename":
            r = c.patch(f"/v1/orgs/{org}", json={"name": "esc-renamed"})
        elif action == "delete":
            r = c.delete(f"/v1/orgs/{org}")
        else:
            r = c.put(f"/v1/orgs/{org}/usage-policy", json={"rpm_limit": 1, "monthly_token_budget": 0})
        if actor in OWNERS:
            allowed(r, {"rename": 200, "delete": 204}.get(action, 200))
            if action == "delete":
                assert owner.get(f"/v1/orgs/{org}").status_code == 404
            elif action == "rename":
                assert owner.get(f"/v1/orgs/{org}").json()["name"] == "esc-renamed"
            else:
                assert owner.get(f"/v1/orgs/{org}/usage-policy").json()["rpm_limit"] == 1
            return
        refused(r)
        after_org = owner.get(f"/v1/orgs/{org}")
        assert after_org.status_code == 200, f"the org is gone: {after_org.text[:200]}"
        assert (after_org.json(), owner.get(f"/v1/orgs/{org}/usage-policy").json()) == before


# --- Other orgs -------------------------------------------------------------------------------------------------

READS = ["GET /v1/orgs/{other}", "GET /v1/orgs/{other}/members", "GET /v1/orgs/{other}/keys",
         "GET /v1/orgs/{other}/keys/{other_key}", "GET /v1/orgs/{other}/service-accounts",
         "GET /v1/orgs/{other}/usage-policy", "GET /v1/orgs/{other}/audit", "GET /v1/usage/requests?org_id={other}",
         "GET /v1/usage/requests.csv?org_id={other}", "GET /v1/admin/model-access/{other}",
         "GET /v1/orgs/{home}/keys/{other_key}"]
READ_CASES = [(a, read) for a in ACTORS for read in READS]
WRITES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "creates a key in": ("POST", "/v1/orgs/{other}/keys", {"name": "esc", "scopes": ALL_SCOPES}),
    "joins as owner": ("POST", "/v1/orgs/{other}/members", {"email": "{me}", "role": "owner"}),
    "renames": ("PATCH", "/v1/orgs/{other}", {"name": "esc-taken-over"}),
    "rotates a key of": ("POST", "/v1/orgs/{other}/keys/{other_key}/rotate", {"grace_seconds": 0}),
    "revokes a key of": ("DELETE", "/v1/orgs/{other}/keys/{other_key}", None),
    "rotates, through its own org, a key of": ("POST", "/v1/orgs/{home}/keys/{other_key}/rotate",
                                               {"grace_seconds": 0}),
}
WRITE_CASES = [(a, w) for a in ("owner-session", "owner-key", "admin-session", "admin-key") for w in WRITES]


class TestOtherOrgsAreInvisible:
    """Another org's anything answers 404 (never 403, never data), and writing to it changes nothing."""

    def _fill(self, world: World, text: str) -> str:
        return text.format(other=world.other.org_id, home=world.org, other_key=world.other.actors["owner"].key_id,
                           me=world.home.actors["owner"].email)

    @pytest.mark.parametrize(("actor", "read"), READ_CASES, ids=[f"{a}: {r}" for a, r in READ_CASES])
    def test_read(self, world: World, actor: str, read: str) -> None:
        method, url = read.split(" ", 1)
        r = world.as_(actor).request(method, self._fill(world, url))
        # In its own org a viewer may not read keys at all (403); anywhere else the answer is 404.
        own_keys = url.startswith("/v1/orgs/{home}/keys") and role_of(actor) == "viewer"
        doc = refused(r, statuses=(403,) if own_keys else (404,))
        assert "data" not in doc

    @pytest.mark.parametrize(("actor", "write"), WRITE_CASES, ids=[f"{a} {w} the other org" for a, w in WRITE_CASES])
    def test_write(self, world: World, actor: str, write: str) -> None:
        method, url, body = WRITES[write]
        them = world.c(world.other.actors["owner"].token)
        before = (world.keys(world.other.org_id, them), world.members(world.other.org_id, them),
                  them.get(f"/v1/orgs/{world.other.org_id}").json())
        payload = {k: self._fill(world, v) if isinstance(v, str) else v for k, v in body.items()} if body else None
        r = world.as_(actor).request(method, self._fill(world, url), json=payload)
        refused(r, statuses=(404,))
        after = (world.keys(world.other.org_id, them), world.members(world.other.org_id, them),
                 them.get(f"/v1/orgs/{world.other.org_id}").json())
        assert after == before


# --- Platform powers --------------------------------------------------------------------------------------------

class TestPlatformPowersStayWithPlatformAdminSessions:
    """No org role and no API key (not even a platform admin's) reaches ``/v1/admin``: 403, nothing made."""

    def _token(self, world: World, actor: str) -> str:
        token = world.platform.admin.key if actor == "platform-admin-key" else world.tokens[actor]
        assert token
        return token

    @pytest.mark.parametrize("actor", ["owner-session", "owner-key", "platform-admin-key"])
    def test_create_a_platform_admin(self, world: World, actor: str) -> None:
        email = f"esc-admin-{uuid.uuid4().hex[:10]}@example.com"
        r = world.c(self._token(world, actor)).post("/v1/admin/users", json={
            "email": email, "password": PASSWORD, "platform_admin": True})
        refused(r)
        assert world.admin.get("/v1/admin/users", params={"email": email}).json()["data"] == []

    def test_platform_admin_session_creates_a_platform_admin(self, world: World) -> None:
        email = f"esc-admin-{uuid.uuid4().hex[:10]}@example.com"
        user = allowed(world.admin.post("/v1/admin/users", json={"email": email, "password": PASSWORD,
                                                                 "platform_admin": True}), 201)
        assert user["platform_admin"] is True

    @pytest.mark.parametrize("actor", ["owner-key", "platform-admin-key"])
    def test_list_users_with_a_key(self, world: World, actor: str) -> None:
        doc = refused(world.c(self._token(world, actor)).get("/v1/admin/users"))
        assert "data" not in doc

    @pytest.mark.parametrize("actor", ["owner-session", "owner-key"])
    def test_lift_the_orgs_model_restriction(self, world: World, actor: str) -> None:
        org = world.throwaway_org()
        allowed(world.admin.put(f"/v1/admin/model-access/{org}", json={"models": ["esc/only"]}), 200)
        try:
            token = world.join(org, actor)
            refused(world.c(token).put(f"/v1/admin/model-access/{org}", json={"models": None}))
            assert world.admin.get(f"/v1/admin/model-access/{org}").json()["models"] == ["esc/only"]
        finally:
            world.admin.delete(f"/v1/admin/model-access/{org}")

    @pytest.mark.parametrize("actor", ["owner-session", "owner-key", "platform-admin-key"])
    def test_add_a_model(self, world: World, actor: str) -> None:
        name = f"esc/{uuid.uuid4().hex[:10]}"
        r = world.c(self._token(world, actor)).post("/v1/admin/models", json={"name": name, "deployments": [
            {"name": "d", "upstream_model": "m", "base_url": world.platform.upstream.base_url}]})
        refused(r)
        assert world.admin.get(f"/v1/admin/models/{name}").status_code == 404
