"""The invariant behind every key and role write: nothing an actor hands out holds more than the actor."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.auth.service import check_within
from aiaas.kernel.errors import Forbidden
from aiaas.kernel.security import ROLE_RANK, OrgRole, Principal
from aiaas.kernel.text import contains_nul

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
ALL = ["inference", "management:read", "management:write"]


def key(**kw: object) -> Principal:
    fields: dict[str, object] = {"scopes": frozenset(ALL), **kw}
    return Principal(kind="api_key", user_id="u", org_id="o", key_id="k", org_role=OrgRole.OWNER,
                     **fields)  # type: ignore[arg-type]


def within(actor: Principal, **kw: object) -> bool:
    args: dict[str, object] = {"role": OrgRole.MEMBER, "scopes": ["inference"], "allowed_models": None,
                               "rpm_limit": None, "tpm_limit": None, "expires_at": None, **kw}
    try:
        check_within(actor, **args)  # type: ignore[arg-type]
    except Forbidden:
        return False
    return True


class TestRoles:
    @given(st.sampled_from(list(OrgRole)), st.sampled_from(list(OrgRole)))
    def test_a_session_hands_out_roles_up_to_its_own(self, mine: OrgRole, theirs: OrgRole) -> None:
        actor = Principal(kind="session", user_id="u", org_id="o", org_role=mine)
        assert within(actor, role=theirs) is (ROLE_RANK[theirs] <= ROLE_RANK[mine])

    def test_a_platform_admin_session_holds_everything(self) -> None:
        assert within(Principal(kind="session", user_id="u", platform_admin=True), role=OrgRole.OWNER)


class TestKeys:
    def test_scopes(self) -> None:
        narrow = key(scopes=frozenset({"inference", "management:write"}))
        assert within(narrow, scopes=["inference"]) and not within(narrow, scopes=["management:read"])

    def test_models(self) -> None:
        actor = key(allowed_models=frozenset({"a", "b"}))
        assert within(actor, allowed_models=["a"])
        assert not within(actor, allowed_models=["a", "c"]) and not within(actor, allowed_models=None)
        assert within(key(), allowed_models=None)

    @pytest.mark.parametrize("name", ["rpm_limit", "tpm_limit"])
    def test_limits(self, name: str) -> None:
        actor = key(**{name: 10})
        assert within(actor, **{name: 10}) and within(actor, **{name: 1})
        assert not within(actor, **{name: 11}) and not within(actor, **{name: None})

    def test_expiry(self) -> None:
        actor = key(expires_at=NOW)
        assert within(actor, expires_at=NOW - dt.timedelta(seconds=1))
        assert not within(actor, expires_at=NOW + dt.timedelta(seconds=1)) and not within(actor, expires_at=None)


class TestNul:
    @pytest.mark.parametrize(("path", "raw", "query", "body", "found"), [
        ("/v1/x", b"/v1/x", b"", b'{"a":"b"}', False),
        ("/v1/x\x00", b"/v1/x%00", b"", b"", True),
        ("/v1/x", b"/v1/x", b"name=a%00", b"", True),
        ("/v1/x", b"/v1/x", b"", b'{"a":"\\u0000"}', True),
        ("/v1/x", b"/v1/x", b"", b'{"a":"\\\\u0000"}', False),  # the text \u0000, not a NUL
        ("/v1/x", b"/v1/x", b"", b'{"a":"\\\\\\u0000"}', True),
    ])
    def test_contains_nul(self, path: str, raw: bytes, query: bytes, body: bytes, found: bool) -> None:
        assert contains_nul(path=path, raw_path=raw, query=query, body=body) is found
