"""Token parsing, the permission table and API-key scopes, checked over generated input."""

from __future__ import annotations

import itertools
import string

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.kernel.security import (
    PLATFORM_ADMIN_PERMISSIONS,
    ROLE_PERMISSIONS,
    OrgRole,
    Permission,
    Principal,
    Scope,
    bearer_token,
    display_prefix,
    new_api_key,
    new_session_token,
    permissions_of,
    scope_allows,
    sha256_hex,
    token_kind,
)

URLSAFE = string.ascii_letters + string.digits + "-_"
ORDER = [OrgRole.VIEWER, OrgRole.MEMBER, OrgRole.ADMIN, OrgRole.OWNER]


class TestTokens:
    def test_new_tokens_are_recognised_and_distinct(self) -> None:
        keys = {new_api_key() for _ in range(50)}
        assert len(keys) == 50
        assert all(token_kind(k) == "api_key" and len(k) == 46 for k in keys)
        assert token_kind(new_session_token()) == "session"
        key = new_api_key()
        assert display_prefix(key) == key[:12] and display_prefix(key) != key
        assert len(sha256_hex(key)) == 64

    @given(st.text(max_size=200))
    def test_token_kind_never_raises_and_rejects_arbitrary_text(self, text: str) -> None:
        kind = token_kind(text)
        if kind == "api_key":
            assert text.startswith("sk-") and len(text) == 46 and set(text[3:]) <= set(URLSAFE)
        elif kind == "session":
            assert text.startswith("ses_") and len(text) == 47 and set(text[4:]) <= set(URLSAFE)
        else:
            assert kind is None

    @given(st.text(alphabet=URLSAFE, min_size=43, max_size=43))
    def test_well_formed_keys_parse(self, body: str) -> None:
        assert token_kind("sk-" + body) == "api_key"
        assert token_kind("ses_" + body) == "session"
        assert token_kind("sk-" + body + "x") is None
        assert token_kind("sk-" + body[:-1]) is None

    @given(st.text(max_size=600))
    def test_bearer_parsing_never_raises(self, header: str) -> None:
        token = bearer_token(header)
        if token is not None:
            assert header.strip().lower().startswith("bearer")
            assert token == token.strip() and token

    @pytest.mark.parametrize(("header", "token"), [
        ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("Bearer", None), ("", None),
        (None, None), ("Basic abc", None), ("Bearerabc", None), ("Bearer " + "a" * 600, None),
    ])
    def test_bearer_examples(self, header: str | None, token: str | None) -> None:
        assert bearer_token(header) == token


class TestPermissionTable:
    def test_roles_are_nested(self) -> None:
        for lower, higher in itertools.pairwise(ORDER):
            assert ROLE_PERMISSIONS[lower] < ROLE_PERMISSIONS[higher]

    def test_only_platform_admins_have_platform_admin(self) -> None:
        assert all(Permission.PLATFORM_ADMIN not in perms for perms in ROLE_PERMISSIONS.values())
        assert frozenset(Permission) == PLATFORM_ADMIN_PERMISSIONS

    def test_the_documented_matrix(self) -> None:
        P = Permission
        assert ROLE_PERMISSIONS[OrgRole.VIEWER] == {P.ORG_READ, P.USAGE_READ}
        assert {P.MODELS_INVOKE, P.KEYS_MANAGE_OWN} <= ROLE_PERMISSIONS[OrgRole.MEMBER]
        assert P.MEMBERS_MANAGE not in ROLE_PERMISSIONS[OrgRole.MEMBER]
        assert {P.MEMBERS_MANAGE, P.KEYS_MANAGE_ALL, P.AUDIT_READ} <= ROLE_PERMISSIONS[OrgRole.ADMIN]
        assert P.ORG_MANAGE not in ROLE_PERMISSIONS[OrgRole.ADMIN] and P.ORG_MANAGE in ROLE_PERMISSIONS[OrgRole.OWNER]

    @given(st.sampled_from([*OrgRole, None]), st.booleans(), st.sampled_from(list(Permission)))
    def test_has_agrees_with_the_table_for_sessions(self, role: OrgRole | None, admin: bool, perm: Permission) -> None:
        p = Principal(kind="session", user_id="u", org_role=role, platform_admin=admin)
        expected = perm is Permission.SELF or perm in permissions_of(role, platform_admin=admin)
        assert p.has(perm) is expected

    @given(st.sampled_from(list(OrgRole)), st.frozensets(st.sampled_from([s.value for s in Scope])),
           st.sampled_from(list(Permission)), st.booleans())
    def test_a_key_never_exceeds_its_owner_or_its_scopes(self, role: OrgRole, scopes: frozenset[str],
                                                         perm: Permission, write: bool) -> None:
        p = Principal(kind="api_key", user_id="u", org_id="o", key_id="k", org_role=role, scopes=scopes)
        if p.has(perm, write=write) and perm is not Permission.SELF:
            assert perm in ROLE_PERMISSIONS[role]
            assert scope_allows(scopes, perm, write=write)
            if perm is Permission.MODELS_INVOKE:
                assert Scope.INFERENCE in scopes
            elif write:
                assert Scope.MANAGEMENT_WRITE in scopes

    def test_unknown_roles_are_rejected_on_decode(self) -> None:
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(b'{"kind":"session","user_id":"u","org_role":"emperor"}', type=Principal)

    def test_allow_list(self) -> None:
        assert Principal(kind="api_key", user_id="u").may_use_model("anything")
        p = Principal(kind="api_key", user_id="u", allowed_models=frozenset({"a"}))
        assert p.may_use_model("a") and not p.may_use_model("b")
