"""Every role x every documented action, through real HTTP against PostgreSQL and Redis.

The expectations are read from docs/permissions.md, never from the code: the "Roles x permissions" matrix
(between ``<!-- matrix:start -->`` and ``<!-- matrix:end -->``), the "What each action needs" table (which
route needs which permission) and the "Status codes" table. Each probe below is one concrete, valid request
on a documented route; it is matched to its row of the action table by method and path, so a row that no
probe exercises, or a probe that no row documents, fails too.

Allowed -> 2xx (or, where a probe says so, a non-permission 4xx such as 404 ``model_not_found`` for a model
that does not exist). A role without the permission -> 403 with a permission code. Someone outside the org
(named in the path, or in ``?org_id=``) -> 404. A member reaching for another member's key without
``keys:manage_all`` -> 404. Sessions and API keys (all scopes) of every role get exactly what the matrix gives
the role, except where the permission cell's note restricts the row to one kind of credential: "(sessions)"
refuses API keys with 403; "(API keys: ..., 403 `code`)" refuses every session, whatever its role, with the
status and problem code the note names.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aiaas.entrypoints.bootstrap import Container
from aiaas.kernel.config import Settings

from .conftest import PASSWORD, Actor, World, app_client, bearer, login, new_user

DOC = Path(__file__).resolve().parents[3] / "docs" / "permissions.md"
ALL_SCOPES = ["inference", "management:read", "management:write"]


# --- docs/permissions.md, parsed ----------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _rows(lines: list[str]) -> list[list[str]]:
    """The rows of the first markdown table in ``lines``, header included, separator dropped."""
    table: list[list[str]] = []
    for line in lines:
        if line.startswith("|"):
            if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                table.append(_cells(line))
        elif table:
            break
    assert table, "no table found"
    return table


def _section(text: str, heading: str) -> list[str]:
    """The lines of the ``## heading`` section of the page."""
    parts = re.split(r"^## ", text, flags=re.M)
    for part in parts[1:]:
        title, _, body = part.partition("\n")
        if title.strip() == heading:
            return body.splitlines()
    raise AssertionError(f"docs/permissions.md has no section {heading!r}")


TEXT = DOC.read_text(encoding="utf-8")
ROLES = ("platform admin", "owner", "admin", "member", "viewer")


def _matrix(text: str) -> dict[str, frozenset[str]]:
    """Role (as the page names it) -> the permissions the page gives it."""
    block = text.split("<!-- matrix:start -->")[1].split("<!-- matrix:end -->")[0].strip().splitlines()
    header, *rows = _rows(block)
    assert tuple(header) == ("permission", *ROLES), header
    granted: dict[str, set[str]] = {role: set() for role in ROLES}
    for perm, *marks in rows:
        assert len(marks) == len(ROLES), (perm, marks)
        for role, mark in zip(ROLES, marks, strict=True):
            assert mark in {"✓", "—"}, (perm, role, mark)
            if mark == "✓":
                granted[role].add(perm.strip("`"))
    return {role: frozenset(perms) for role, perms in granted.items()}


@dataclass(frozen=True)
class RouteSpec:
    """One route pattern of the action table: ``methods`` None means every method of the path."""

    app: str  # "api" | "streamer"
    methods: frozenset[str] | None
    path: str  # "/v1/orgs/{org_id}/keys"; a trailing "…" matches every path below it

    def matches(self, app: str, method: str, path: str) -> bool:
        if app != self.app or (self.methods is not None and method not in self.methods):
            return False
        if self.path.endswith("…"):
            return path.startswith(self.path[:-1])
        return path == self.path


@dataclass(frozen=True)
class Rule:
    """One row of "What each action needs"."""

    action: str
    routes: tuple[RouteSpec, ...]
    permission: str  # "public", "self" or a permission of the matrix
    note: str  # the parenthesised qualifier of the permission cell ("sessions", "API keys: ...", ...), or ""
    refines: str | None  # for a "same routes" row: the action of the row whose routes it shares

    def matches(self, app: str, method: str, path: str) -> bool:
        return any(r.matches(app, method, path) for r in self.routes)

    @property
    def sessions_only(self) -> bool:
        """"(sessions)": an API key is refused."""
        return self.note == "sessions"

    @property
    def session_refusal(self) -> tuple[int, str] | None:
        """"(API keys: ..., 403 `code`)": the (status, problem code) every session is refused with."""
        if not self.note.startswith("API keys"):
            return None
        m = re.search(r"(\d{3}) `([a-z_]+)`", self.note)
        assert m, f"{self.action}: the note {self.note!r} names no status and code for a session"
        return int(m[1]), m[2]


ORG_PREFIX = "/v1/orgs/{org_id}"


def _routes(cell: str) -> tuple[RouteSpec, ...]:
    """``POST …/members`, `PATCH`/`DELETE …/members/{user_id}`` -> route specs (``…/`` = below the org)."""
    app = "streamer" if cell.startswith("streamer") else "api"
    specs: list[RouteSpec] = []
    pending: list[str] = []  # methods written alone (`PATCH`, `DELETE /v1/orgs/{org_id}`) apply to the next path
    for span in re.findall(r"`([^`]+)`", cell):
        head, _, rest = span.partition(" ")
        if head.isupper() and not rest:
            pending.append(head)
            continue
        if head.isupper():
            methods: frozenset[str] | None = frozenset([*pending, head])
            path = rest.strip()
        else:
            methods, path = (frozenset(pending) if pending else None), span.strip()
        pending = []
        if path.startswith("…/"):
            path = ORG_PREFIX + path[1:]
        specs.append(RouteSpec(app, methods, path))
    assert specs and not pending, f"cannot read the routes of {cell!r}"
    return tuple(specs)


def _rules(text: str) -> list[Rule]:
    header, *rows = _rows(_section(text, "What each action needs"))
    assert header == ["action", "route", "permission"], header
    rules: list[Rule] = []
    for action, route, permission in rows:
        m = re.fullmatch(r"`?([a-z_:]+)`?\s*(?:\((.+)\))?", permission)
        assert m, f"cannot read the permission {permission!r} of {action!r}"
        if route == "same routes":
            previous = rules[-1]
            rules.append(Rule(action, previous.routes, m[1], m[2] or "", refines=previous.action))
        else:
            rules.append(Rule(action, _routes(route), m[1], m[2] or "", refines=None))
    return rules


def _statuses(text: str) -> list[tuple[str, int]]:
    header, *rows = _rows(_section(text, "Status codes"))
    assert header == ["situation", "status"], header
    return [(situation, int(re.match(r"\d{3}", status)[0])) for situation, status in rows]  # type: ignore[index]


def _status_of(situation: str) -> int:
    """The status the page gives the situation whose description contains ``situation``."""
    found = [status for text, status in STATUSES if situation in text]
    assert len(found) == 1, f"docs/permissions.md, Status codes: no single row about {situation!r}"
    return found[0]


MATRIX = _matrix(TEXT)
RULES = _rules(TEXT)
STATUSES = _statuses(TEXT)
PERMISSIONS = frozenset().union(*MATRIX.values())
NOT_A_MEMBER = _status_of("an org you do not belong to")
LACKS_PERMISSION = _status_of("lacks the permission")
OTHERS_KEY = _status_of("a key of another member of your org")


# --- the world the probes act in ----------------------------------------------------------------------


@dataclass
class Ctx:
    api: AsyncTestClient[Any]
    streamer: AsyncTestClient[Any]
    container: Container
    world: World
    role: str  # a role of the matrix, or "outsider"
    kind: str  # "session" | "api_key"
    actor: Actor
    headers: dict[str, str]

    @property
    def org(self) -> str:
        return self.world.a.org_id

    @property
    def owner(self) -> Actor:
        return self.world.a.actors["owner"]

    @property
    def as_owner(self) -> dict[str, str]:
        return bearer(self.owner.token)

    async def fresh_member(self) -> tuple[str, str]:
        """A new person added to the org as a member by its owner: (email, user id)."""
        email, uid = await new_user(self.container)
        r = await self.api.post(f"/v1/orgs/{self.org}/members", json={"email": email, "role": "member"},
                                headers=self.as_owner)
        assert r.status_code == 201, r.text
        return email, uid

    async def service_account(self) -> str:
        r = await self.api.post(f"/v1/orgs/{self.org}/service-accounts", json={"name": "sa", "role": "member"},
                                headers=self.as_owner)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def others_key(self) -> str:
        """A key of another person of the org, a member (so every role above member may act on it)."""
        email, _ = await self.fresh_member()
        token = await login(self.api, email)
        r = await self.api.post(f"/v1/orgs/{self.org}/keys", json={"name": "theirs"}, headers=bearer(token))
        assert r.status_code == 201, r.text
        return str(r.json()["api_key"]["id"])

    async def own_key(self) -> str:
        """A key the actor owns when it may have one, else another member's (so the guard decides)."""
        r = await self.api.post(f"/v1/orgs/{self.org}/keys", json={"name": "mine"}, headers=self.headers)
        if r.status_code == 201:
            return str(r.json()["api_key"]["id"])
        return await self.others_key()

    async def fresh_org(self) -> tuple[str, dict[str, str]]:
        """A new org where the actor holds the same role with the same kind of credential, and that credential."""
        if self.role == "owner":  # the actor makes it, and so owns it
            r = await self.api.post("/v1/orgs", json={"name": "doomed"}, headers=bearer(self.actor.token))
            assert r.status_code == 201, r.text
            org = str(r.json()["id"])
            joined = "owner"
        else:
            r = await self.api.post("/v1/orgs", json={"name": "doomed"}, headers=self.as_owner)
            assert r.status_code == 201, r.text
            org = str(r.json()["id"])
            if self.role in ("outsider", "platform admin"):
                return org, self.headers
            # A viewer cannot make a key of its own: it gets one as a member and is demoted afterwards.
            joined = "member" if self.kind == "api_key" and self.role == "viewer" else self.role
            r = await self.api.post(f"/v1/orgs/{org}/members", json={"email": self.actor.email, "role": joined},
                                    headers=self.as_owner)
            assert r.status_code == 201, r.text
        if self.kind == "session":
            return org, self.headers
        r = await self.api.post(f"/v1/orgs/{org}/keys", json={"name": "k", "scopes": ALL_SCOPES},
                                headers=bearer(self.actor.token))
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        if joined != self.role:
            r = await self.api.patch(f"/v1/orgs/{org}/members/{self.actor.user_id}", json={"role": self.role},
                                     headers=self.as_owner)
            assert r.status_code == 200, r.text
        return org, bearer(key)


Call = Callable[[Ctx], Awaitable[Any]]


@dataclass(frozen=True)
class Probe:
    """One valid request on a documented route (``path`` written as the page writes it)."""

    app: str
    method: str
    path: str
    call: Call
    # "key": acts on another member's key; "service_account": gives a key to a service account. Both are "the
    # same on anyone's keys, keys for service accounts" of the page.
    others: str | None = None
    # Non-2xx answers that still mean "allowed": the request passed the permission check (a model that is
    # not in the catalog, say), as (status, problem code).
    also_allowed: frozenset[tuple[int, str]] = field(default_factory=frozenset)
    # The request names the org in ``?org_id=`` rather than in its path (the usage ledger): someone outside
    # the org is "an org you do not belong to" all the same.
    org_query: bool = False


async def _logout(c: Ctx) -> Any:
    headers = c.headers
    if c.kind == "session":  # a session of its own: the actor's shared session must live on
        headers = bearer(await login(c.api, c.actor.email))
    return await c.api.post("/v1/auth/logout", headers=headers)


async def _org_delete(c: Ctx) -> Any:
    org, headers = await c.fresh_org()
    return await c.api.delete(f"/v1/orgs/{org}", headers=headers)


async def _member_add(c: Ctx) -> Any:
    email, _ = await new_user(c.container)
    return await c.api.post(f"/v1/orgs/{c.org}/members", json={"email": email, "role": "member"}, headers=c.headers)


async def _member_change(c: Ctx) -> Any:
    _, uid = await c.fresh_member()
    return await c.api.patch(f"/v1/orgs/{c.org}/members/{uid}", json={"role": "viewer"}, headers=c.headers)


async def _member_remove(c: Ctx) -> Any:
    _, uid = await c.fresh_member()
    return await c.api.delete(f"/v1/orgs/{c.org}/members/{uid}", headers=c.headers)


async def _sa_delete(c: Ctx) -> Any:
    return await c.api.delete(f"/v1/orgs/{c.org}/service-accounts/{await c.service_account()}", headers=c.headers)


async def _key(c: Ctx, key_id: str, what: str) -> Any:
    url = f"/v1/orgs/{c.org}/keys/{key_id}"
    if what == "get":
        return await c.api.get(url, headers=c.headers)
    if what == "delete":
        return await c.api.delete(url, headers=c.headers)
    return await c.api.post(url + "/rotate", json={"grace_seconds": 60}, headers=c.headers)


def _own_key(what: str) -> Call:
    async def call(c: Ctx) -> Any:
        return await _key(c, await c.own_key(), what)
    return call


def _others_key(what: str) -> Call:
    async def call(c: Ctx) -> Any:
        return await _key(c, await c.others_key(), what)
    return call


async def _key_for_service_account(c: Ctx) -> Any:
    sa = await c.service_account()
    return await c.api.post(f"/v1/orgs/{c.org}/keys", json={"name": "sa-key", "service_account_id": sa},
                            headers=c.headers)


MISSING_MODEL = "rbac-matrix-no-such-model"
MODEL_ABSENT = frozenset({(404, "model_not_found")})
MESSAGES = [{"role": "user", "content": "hi"}]


def _get(path: str) -> Call:
    return lambda c: c.api.get(path.replace("{org_id}", c.org), headers=c.headers)


def _get_in_org(path: str, params: dict[str, Any] | None = None) -> Call:
    """``GET path?org_id=<the org>`` (a session must name the org; an API key may name its own)."""
    return lambda c: c.api.get(path, params={"org_id": c.org, **(params or {})}, headers=c.headers)


ANALYTICS_RANGE = {"start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}
OPENAI_RANGE = {"start_time": 1793491200, "end_time": 1793577600}


PROBES: dict[str, Probe] = {
    "login": Probe("api", "POST", "/v1/auth/login", lambda c: c.api.post(
        "/v1/auth/login", json={"email": c.actor.email, "password": PASSWORD}, headers=c.headers)),
    "logout": Probe("api", "POST", "/v1/auth/logout", _logout),
    "me": Probe("api", "GET", "/v1/users/me", _get("/v1/users/me")),
    "orgs.create": Probe("api", "POST", "/v1/orgs", lambda c: c.api.post(
        "/v1/orgs", json={"name": f"o-{uuid.uuid4().hex[:6]}"}, headers=c.headers)),
    "orgs.list": Probe("api", "GET", "/v1/orgs", _get("/v1/orgs")),
    "org.read": Probe("api", "GET", ORG_PREFIX, _get(ORG_PREFIX)),
    "org.rename": Probe("api", "PATCH", ORG_PREFIX, lambda c: c.api.patch(
        f"/v1/orgs/{c.org}", json={"name": "renamed"}, headers=c.headers)),
    "org.delete": Probe("api", "DELETE", ORG_PREFIX, _org_delete),
    "members.list": Probe("api", "GET", ORG_PREFIX + "/members", _get(ORG_PREFIX + "/members")),
    "service_accounts.list": Probe("api", "GET", ORG_PREFIX + "/service-accounts",
                                   _get(ORG_PREFIX + "/service-accounts")),
    "members.add": Probe("api", "POST", ORG_PREFIX + "/members", _member_add),
    "members.change_role": Probe("api", "PATCH", ORG_PREFIX + "/members/{user_id}", _member_change),
    "members.remove": Probe("api", "DELETE", ORG_PREFIX + "/members/{user_id}", _member_remove),
    "service_accounts.create": Probe("api", "POST", ORG_PREFIX + "/service-accounts", lambda c: c.api.post(
        f"/v1/orgs/{c.org}/service-accounts", json={"name": "ci", "role": "member"}, headers=c.headers)),
    "service_accounts.delete": Probe("api", "DELETE", ORG_PREFIX + "/service-accounts/{id}", _sa_delete),
    "keys.create": Probe("api", "POST", ORG_PREFIX + "/keys", lambda c: c.api.post(
        f"/v1/orgs/{c.org}/keys", json={"name": "n"}, headers=c.headers)),
    "keys.list": Probe("api", "GET", ORG_PREFIX + "/keys", _get(ORG_PREFIX + "/keys")),
    "keys.get_own": Probe("api", "GET", ORG_PREFIX + "/keys/{key_id}", _own_key("get")),
    "keys.revoke_own": Probe("api", "DELETE", ORG_PREFIX + "/keys/{key_id}", _own_key("delete")),
    "keys.rotate_own": Probe("api", "POST", ORG_PREFIX + "/keys/{key_id}/rotate", _own_key("rotate")),
    "keys.get_others": Probe("api", "GET", ORG_PREFIX + "/keys/{key_id}", _others_key("get"), others="key"),
    "keys.revoke_others": Probe("api", "DELETE", ORG_PREFIX + "/keys/{key_id}", _others_key("delete"),
                                others="key"),
    "keys.rotate_others": Probe("api", "POST", ORG_PREFIX + "/keys/{key_id}/rotate", _others_key("rotate"),
                                others="key"),
    "keys.create_for_service_account": Probe("api", "POST", ORG_PREFIX + "/keys", _key_for_service_account,
                                             others="service_account"),
    "audit.read": Probe("api", "GET", ORG_PREFIX + "/audit", _get(ORG_PREFIX + "/audit")),
    "usage.list": Probe("api", "GET", "/v1/usage/requests", _get_in_org("/v1/usage/requests"), org_query=True),
    "usage.export_csv": Probe("api", "GET", "/v1/usage/requests.csv", _get_in_org("/v1/usage/requests.csv"),
                              org_query=True),
    "usage_policy.read": Probe("api", "GET", ORG_PREFIX + "/usage-policy", _get(ORG_PREFIX + "/usage-policy")),
    "usage_policy.set": Probe("api", "PUT", ORG_PREFIX + "/usage-policy", lambda c: c.api.put(
        f"/v1/orgs/{c.org}/usage-policy", json={"rpm_limit": 1000}, headers=c.headers)),
    "admin.users.list": Probe("api", "GET", "/v1/admin/users", _get("/v1/admin/users")),
    "admin.users.create": Probe("api", "POST", "/v1/admin/users", lambda c: c.api.post(
        "/v1/admin/users", json={"email": f"n-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        headers=c.headers)),
    "admin.orgs.list": Probe("api", "GET", "/v1/admin/orgs", _get("/v1/admin/orgs")),
    "admin.audit": Probe("api", "GET", "/v1/admin/audit", _get("/v1/admin/audit")),
    "admin.models.list": Probe("api", "GET", "/v1/admin/models", _get("/v1/admin/models")),
    "admin.model_access.list": Probe("api", "GET", "/v1/admin/model-access", _get("/v1/admin/model-access")),
    "admin.prices.list": Probe("api", "GET", "/v1/admin/prices", _get("/v1/admin/prices")),
    "admin.prices.add": Probe("api", "POST", "/v1/admin/prices", lambda c: c.api.post(
        "/v1/admin/prices", json={"model": "rbac/priced", "input_per_mtok": "1", "output_per_mtok": "2"},
        headers=c.headers)),
    "analytics.usage": Probe("api", "GET", "/v1/analytics/usage", _get_in_org("/v1/analytics/usage", ANALYTICS_RANGE),
                             org_query=True),
    "analytics.performance": Probe("api", "GET", "/v1/analytics/performance",
                                   _get_in_org("/v1/analytics/performance", ANALYTICS_RANGE), org_query=True),
    "organization.usage.completions": Probe("api", "GET", "/v1/organization/usage/completions",
                                            _get_in_org("/v1/organization/usage/completions", OPENAI_RANGE),
                                            org_query=True),
    "organization.usage.embeddings": Probe("api", "GET", "/v1/organization/usage/embeddings",
                                           _get_in_org("/v1/organization/usage/embeddings", OPENAI_RANGE),
                                           org_query=True),
    "organization.costs": Probe("api", "GET", "/v1/organization/costs",
                                _get_in_org("/v1/organization/costs", OPENAI_RANGE), org_query=True),
    "models.chat": Probe("streamer", "POST", "/v1/chat/completions", lambda c: c.streamer.post(
        "/v1/chat/completions", json={"model": MISSING_MODEL, "messages": MESSAGES}, headers=c.headers),
        also_allowed=MODEL_ABSENT),
    "models.completions": Probe("streamer", "POST", "/v1/completions", lambda c: c.streamer.post(
        "/v1/completions", json={"model": MISSING_MODEL, "prompt": "hi"}, headers=c.headers),
        also_allowed=MODEL_ABSENT),
    "models.embeddings": Probe("streamer", "POST", "/v1/embeddings", lambda c: c.streamer.post(
        "/v1/embeddings", json={"model": MISSING_MODEL, "input": "hi"}, headers=c.headers),
        also_allowed=MODEL_ABSENT),
    "models.list": Probe("streamer", "GET", "/v1/models", lambda c: c.streamer.get("/v1/models", headers=c.headers)),
    "models.retrieve": Probe("streamer", "GET", "/v1/models/{model}", lambda c: c.streamer.get(
        f"/v1/models/{MISSING_MODEL}", headers=c.headers), also_allowed=MODEL_ABSENT),
}


def _rules_of(probe: Probe) -> tuple[Rule, Rule | None]:
    """The row of the action table documenting ``probe``, and the row refining it (``keys:manage_all``)."""
    primary = [r for r in RULES if r.refines is None and r.matches(probe.app, probe.method, probe.path)]
    assert len(primary) == 1, f"{probe.method} {probe.path}: documented by {[r.action for r in primary]}"
    refining = [r for r in RULES if r.refines == primary[0].action]
    assert len(refining) <= 1
    return primary[0], (refining[0] if refining else None)


@dataclass(frozen=True)
class Expect:
    status: int | None  # None: allowed (2xx, or one of the probe's ``also_allowed``)
    why: str
    code: str | None = None  # the problem code the page names for this refusal, if it names one


def expected(name: str, role: str, kind: str) -> Expect:
    """What docs/permissions.md gives ``role`` (a matrix column, or "outsider") for probe ``name``."""
    probe = PROBES[name]
    rule, refining = _rules_of(probe)
    if rule.permission == "public":
        return Expect(None, "public")
    if rule.sessions_only and kind == "api_key":
        return Expect(LACKS_PERMISSION, f"{rule.action}: sessions only")
    refusal = rule.session_refusal
    if refusal is not None and kind == "session":  # whatever the session's role, the outsider's included
        return Expect(refusal[0], f"{rule.action}: API keys only", code=refusal[1])
    if rule.permission == "self":
        return Expect(None, "self")
    assert rule.permission in PERMISSIONS, f"{rule.action}: {rule.permission} is not in the matrix"
    if role == "outsider":
        if "{org_id}" in probe.path or probe.org_query:
            return Expect(NOT_A_MEMBER, "an org you do not belong to")
        return Expect(LACKS_PERMISSION, f"{rule.permission}: held by no role of an outsider")
    held = MATRIX[role]
    if rule.permission not in held:
        return Expect(LACKS_PERMISSION, f"{role} lacks {rule.permission}")
    if probe.others and refining is not None and refining.permission not in held:
        if probe.others == "key":
            return Expect(OTHERS_KEY, f"another member's key without {refining.permission}")
        return Expect(LACKS_PERMISSION, f"{role} lacks {refining.permission}")
    return Expect(None, f"{role} holds {rule.permission}")


REFUSAL_CODES = {"permission_denied", "session_required"}  # the platform's "you lack the permission" codes
HIDDEN_CODES = {"org_not_found", "key_not_found"}  # the platform's "not yours to see" codes


def _check(r: Any, want: Expect, probe: Probe, label: str) -> None:
    msg = f"{label} ({want.why}): got {r.status_code} {r.text[:300]}"
    if want.status is None:
        if 200 <= r.status_code < 300:
            return
        assert r.headers["content-type"].startswith("application/problem+json"), msg
        assert (r.status_code, r.json().get("code")) in probe.also_allowed, f"expected allowed; {msg}"
        return
    assert r.status_code == want.status, f"expected {want.status}; {msg}"
    assert r.headers["content-type"].startswith("application/problem+json"), msg
    doc = r.json()
    assert doc["status"] == want.status, msg
    if want.code is not None:
        assert doc.get("code") == want.code, f"expected code {want.code!r}; {msg}"
    elif want.status == 403:
        assert doc.get("code") in REFUSAL_CODES, f"expected a permission refusal; {msg}"
    elif want.status == 404:
        assert doc.get("code") in HIDDEN_CODES, f"expected the target hidden; {msg}"


# --- fixtures and tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def module_streamer(identity_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async for c in app_client("streamer", identity_settings):
        yield c


@pytest.fixture(scope="module")
async def viewer_key_actor(world: World, container: Container, module_api: AsyncTestClient[Any]) -> Actor:
    """A viewer of org A holding an API key with every scope (made as a member, then demoted)."""
    org, owner = world.a.org_id, world.a.actors["owner"]
    email, uid = await new_user(container)
    r = await module_api.post(f"/v1/orgs/{org}/members", json={"email": email, "role": "member"},
                              headers=bearer(owner.token))
    assert r.status_code == 201, r.text
    actor = Actor(email=email, user_id=uid, token=await login(module_api, email))
    r = await module_api.post(f"/v1/orgs/{org}/keys", json={"name": "k", "scopes": ALL_SCOPES},
                              headers=bearer(actor.token))
    assert r.status_code == 201, r.text
    actor.key, actor.key_id = r.json()["key"], r.json()["api_key"]["id"]
    r = await module_api.patch(f"/v1/orgs/{org}/members/{uid}", json={"role": "viewer"}, headers=bearer(owner.token))
    assert r.status_code == 200, r.text
    return actor


SESSION_ROLES = [*ROLES, "outsider"]
KEY_ROLES = ["owner", "admin", "member", "viewer"]  # a platform admin's key carries no platform powers


def _actor(world: World, role: str, kind: str, viewer_key_actor: Actor) -> Actor:
    if role == "outsider":
        return world.outsider
    if role == "platform admin":
        return world.admin
    if kind == "api_key" and role == "viewer":
        return viewer_key_actor
    return world.a.actors[role]


async def _run(name: str, role: str, kind: str, world: World, container: Container, api: AsyncTestClient[Any],
               streamer: AsyncTestClient[Any], viewer_key_actor: Actor) -> None:
    actor = _actor(world, role, kind, viewer_key_actor)
    token = actor.token if kind == "session" else actor.key
    assert token, f"{role} has no {kind}"
    ctx = Ctx(api, streamer, container, world, role, kind, actor, bearer(token))
    probe = PROBES[name]
    r = await probe.call(ctx)
    _check(r, expected(name, role, kind), probe, f"{role} {kind} {name}")


class TestTheDocument:
    def test_every_row_is_probed_and_every_probe_documented(self) -> None:
        covered: set[str] = set()
        for name, probe in PROBES.items():
            rule, refining = _rules_of(probe)  # exactly one row documents each probe
            covered.add(rule.action)
            if probe.others:
                assert refining is not None, f"{name}: no row covers acting on others' keys"
                covered.add(refining.action)
        assert covered == {r.action for r in RULES}

    def test_every_permission_row_names_a_documented_permission(self) -> None:
        for rule in RULES:
            assert rule.permission in PERMISSIONS | {"public", "self"}, rule

    def test_every_note_is_understood(self) -> None:
        # A qualifier this test does not know would silently be ignored: "sessions", "API keys: ..." (both
        # read by ``expected``) and "checked in the service" (a ``same routes`` row, probed via ``others``).
        for rule in RULES:
            assert rule.note in ("", "sessions", "checked in the service") or rule.session_refusal, rule


class TestSessionMatrix:
    @pytest.mark.parametrize("role", SESSION_ROLES)
    @pytest.mark.parametrize("name", list(PROBES))
    async def test_role_action(self, world: World, container: Container, module_api: AsyncTestClient[Any],
                               module_streamer: AsyncTestClient[Any], viewer_key_actor: Actor,
                               name: str, role: str) -> None:
        await _run(name, role, "session", world, container, module_api, module_streamer, viewer_key_actor)


class TestApiKeyMatrix:
    @pytest.mark.parametrize("role", KEY_ROLES)
    @pytest.mark.parametrize("name", list(PROBES))
    async def test_key_gets_its_owners_role(self, world: World, container: Container,
                                            module_api: AsyncTestClient[Any], module_streamer: AsyncTestClient[Any],
                                            viewer_key_actor: Actor, name: str, role: str) -> None:
        await _run(name, role, "api_key", world, container, module_api, module_streamer, viewer_key_actor)

    async def test_platform_admins_key_has_no_platform_powers(self, world: World,
                                                              module_api: AsyncTestClient[Any]) -> None:
        # "platform admin ... (sessions only: an API key never carries platform powers)"
        admin = bearer(world.admin.token)
        r = await module_api.post("/v1/orgs", json={"name": "pa"}, headers=admin)
        assert r.status_code == 201, r.text
        r = await module_api.post(f"/v1/orgs/{r.json()['id']}/keys", json={"name": "pa", "scopes": ALL_SCOPES},
                                  headers=admin)
        assert r.status_code == 201, r.text
        key = bearer(r.json()["key"])
        platform = [p for p in PROBES.values() if _rules_of(p)[0].permission == "platform:admin"]
        assert platform
        for probe in platform:
            r = await (module_api.get(probe.path, headers=key) if probe.method == "GET" else
                       module_api.post(probe.path, json={"email": f"p-{uuid.uuid4().hex[:8]}@example.com",
                                                         "password": PASSWORD}, headers=key))
            assert r.status_code == LACKS_PERMISSION, f"{probe.method} {probe.path}: {r.status_code} {r.text}"
            assert r.json()["code"] in REFUSAL_CODES

    async def test_read_only_key_cannot_write(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "ro", "scopes": ["management:read"]})
        ro = bearer(r.json()["key"])
        assert (await module_api.get(f"/v1/orgs/{world.a.org_id}/members", headers=ro)).status_code == 200
        r = await module_api.patch(f"/v1/orgs/{world.a.org_id}", json={"name": "x"}, headers=ro)
        assert r.status_code == 403

    async def test_inference_only_key_cannot_manage(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "inf"})
        inf = bearer(r.json()["key"])
        assert (await module_api.get(f"/v1/orgs/{world.a.org_id}", headers=inf)).status_code == 403

    async def test_key_cannot_mint_wider_scopes(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        owner = world.a.actors["owner"]
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=bearer(owner.token),
                                  json={"name": "w", "scopes": ["management:write"]})
        w = bearer(r.json()["key"])
        r = await module_api.post(f"/v1/orgs/{world.a.org_id}/keys", headers=w,
                                  json={"name": "x", "scopes": ["inference"]})
        assert r.status_code == 403


class TestOwnerRules:
    async def test_admin_cannot_touch_owners(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        org, admin = world.b.org_id, world.b.actors["admin"]
        owner = world.b.actors["owner"]
        r = await module_api.patch(f"/v1/orgs/{org}/members/{owner.user_id}", json={"role": "member"},
                                   headers=bearer(admin.token))
        assert r.status_code == 403
        r = await module_api.patch(f"/v1/orgs/{org}/members/{world.b.actors['member'].user_id}",
                                   json={"role": "owner"}, headers=bearer(admin.token))
        assert r.status_code == 403

    async def test_last_owner_stays(self, world: World, module_api: AsyncTestClient[Any]) -> None:
        org, owner = world.b.org_id, world.b.actors["owner"]
        r = await module_api.patch(f"/v1/orgs/{org}/members/{owner.user_id}", json={"role": "admin"},
                                   headers=bearer(owner.token))
        assert r.status_code == 409
        r = await module_api.delete(f"/v1/orgs/{org}/members/{owner.user_id}", headers=bearer(owner.token))
        assert r.status_code == 409
        assert (await module_api.get(f"/v1/orgs/{org}", headers=bearer(owner.token))).json()["role"] == "owner"
